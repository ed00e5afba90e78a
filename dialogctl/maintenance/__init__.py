"""Keeping a journal healthy: verify, repair, retention cleanup, idle archiving, deletion, doctor.

Imports the layers below; nothing here prints.
"""
