"""The file format: encoding frames, fast readers of the servers' items, salvage of damaged text, spooling.

Imports only the base modules; knows nothing of folders.
"""
