"""The disk layer: folder handles (no links, bounded reads), locks, the journal's layout and the one table of every path under the root.

Imports only the base modules in ``dialogctl/``.
"""
