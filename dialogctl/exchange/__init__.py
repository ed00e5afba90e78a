"""Exports and imports: selection, writers per format, the one registry of formats, importers.

Imports the layers below (up to ``views`` for message filters).
"""
