"""Every path under a journal root, in one table: the only module that spells them.

The constants below are what the code uses; :data:`PATHS` describes each
path for people (the man page's FILES section is generated from it, see
:mod:`dialogctl.cli.docs`). A user's folder (``USER`` below) is the id itself,
or the id cut into shard folders (see :mod:`dialogctl.disk.layout`).
"""

from __future__ import annotations

from typing import NamedTuple

# --- users and their conversations -----------------------------------------------------
USERS_DIR = "users"
DIALOGS_DIR = "dialogs"
ARCHIVE_DIR = "archived"
CURRENT_FILE = "current.yaml"
SESSION_PREFIX = "session-"
YAML_SUFFIX = ".yaml"
LOCK_FILE = ".lock"
METADATA_FILE = "metadata.yaml"  # a user's derived metadata, beside dialogs/

# --- the journal's own files -------------------------------------------------------------
RECORD_PATH = ("config", "journal-config.yaml")  # the layout a journal created by dialogctl records
SYSTEM_DIR = "system"
STATS_FILE = "stats.yaml"
CLEANUP_LOG_FILE = "cleanup.log"
AUDIT_LOG_FILE = "audit.log"
CATALOG_FILE = "catalog.bin"
CATALOG_LOCK = "catalog.lock"
CATALOG_LOG = "catalog.log"  # what dialogctl's own appends added since the catalog was saved (see journal.delta)
QUARANTINE_DIR = "quarantine"

STATS = (SYSTEM_DIR, STATS_FILE)
CLEANUP_LOG = (SYSTEM_DIR, CLEANUP_LOG_FILE)
AUDIT_LOG = (SYSTEM_DIR, AUDIT_LOG_FILE)
CATALOG = (SYSTEM_DIR, CATALOG_FILE)
QUARANTINE = (SYSTEM_DIR, QUARANTINE_DIR)

# The files dialogctl writes itself under system/ and config/ (verify checks they are regular files).
OWN_FILES = (RECORD_PATH, CLEANUP_LOG, AUDIT_LOG, (SYSTEM_DIR, CATALOG_LOCK), (SYSTEM_DIR, CATALOG_LOG), STATS)


class PathEntry(NamedTuple):
    path: str  # relative to the root, with USER, CID and ID standing for names
    meaning: str


PATHS = (
    PathEntry(f"{USERS_DIR}/USER/{DIALOGS_DIR}/{CURRENT_FILE}", "A user's current conversation (USER is the id, or the id cut into shard folders)."),
    PathEntry(f"{USERS_DIR}/USER/{DIALOGS_DIR}/{SESSION_PREFIX}CID{YAML_SUFFIX}", "One conversation per id, in the sessions layout."),
    PathEntry(f"{USERS_DIR}/USER/{DIALOGS_DIR}/{ARCHIVE_DIR}/ID{YAML_SUFFIX}", "Archived conversations."),
    PathEntry(f"{USERS_DIR}/USER/{DIALOGS_DIR}/{LOCK_FILE}", "The user's lock file, with the holder's owner record while held."),
    PathEntry(
        f"{USERS_DIR}/USER/{METADATA_FILE}",
        "The user's summary (userId, createdAt, lastActivity, totalMessages, statistics); derived data, recomputed when stale or missing.",
    ),
    PathEntry("/".join(RECORD_PATH), "The layout a journal created by dialogctl records."),
    PathEntry("/".join(STATS), "The journal's totals as the last stats or cleanup run found them."),
    PathEntry("/".join(CLEANUP_LOG), "JSON lines: each cleanup run's intent (before its first change) and outcome, tied by their run id."),
    PathEntry("/".join(AUDIT_LOG), "JSON lines: each rm and repair run's intent (before its first change) and outcome; never message text."),
    PathEntry("/".join(CATALOG), f"A cache of conversation summaries for stats, list and cleanup (locked by {CATALOG_LOCK}); safe to delete."),
    PathEntry(
        f"{SYSTEM_DIR}/{CATALOG_LOG}",
        "Lines telling what dialogctl's own appends added since the catalog was saved, so it need not read them back; safe to delete.",
    ),
    PathEntry("/".join(QUARANTINE) + "/", "Exact copies of what repair replaced or dropped, under RUN/PATH-IN-THE-JOURNAL."),
)
