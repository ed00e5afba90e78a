"""Read-only views over a journal: overview, analytics, search, follow, message filters.

Imports the layers below (base, ``disk``, ``fileformat``, ``journal``).
"""
