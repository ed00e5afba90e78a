"""The journal: finding users and conversation files, reading, appending, archiving and restoring under locks; user metadata; the catalog.

Imports the base modules, ``disk`` and ``fileformat``.
"""
