"""Settings: where they come from and what wins.

Each setting is resolved on its own, first match wins:

1. a command-line flag (``--root``, ``--layout``, ``--set KEY=VALUE`` ...);
2. a ``DIALOGUE_JOURNAL_*`` environment variable;
3. ``poto.config.yaml`` (``--config PATH``, else the current directory), under
   ``dialogueJournal.filesystem`` (and ``dialogueJournal.cleanup`` for the
   cleanup defaults), with ``${VAR}`` and ``${VAR:-default}`` expanded;
4. the user config file ``<platformdirs user config dir>/config.yaml`` with the
   same structure;
5. the defaults of the reference design.

Every value remembers its source so ``dialogctl config`` can show it. The
default root is ``<platformdirs user data dir>/journal`` (on Linux
``~/.local/share/dialogctl/journal``), not the reference's ``./data/dialogues``,
so that the same command finds the same journal from any directory. A relative
``root`` in a config file is taken relative to that file's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import InvalidInput

APP_NAME = "dialogctl"
ENV_PREFIX = "DIALOGUE_JOURNAL_"
PROJECT_CONFIG = "poto.config.yaml"


def _int_in(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        if isinstance(value, str):
            value = value.strip()
            if not re.fullmatch(r"[+-]?\d+", value):
                raise ValueError("expected a whole number")
        number = int(value)
        if number < lo or (hi is not None and number > hi):
            raise ValueError(f"expected a number from {lo}" + (f" to {hi}" if hi is not None else " up"))
        return number

    return convert


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip()
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return convert


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("expected a non-empty text")
    return text


def _mode(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"0?o?[0-7]{3,4}", text):
            raise ValueError("expected an octal mode such as 0600")
        number = int(text.replace("o", ""), 8)
    if number & ~0o7777:
        raise ValueError("expected an octal mode such as 0600")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def _percent(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 100:
        raise ValueError("expected a percentage from 0 to 100")
    return int(number) if number.is_integer() else number  # shown as 50, not 50.0


def _optional_hours(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    number = float(value)
    if number < 0:
        raise ValueError("expected a number of hours, 0 or more")
    return number


class Spec(NamedTuple):
    name: str  # the setting's key, as in poto.config.yaml
    env: str
    default: Any
    convert: Callable[[Any], Any]
    help: str
    section: str = "filesystem"


SPECS: tuple[Spec, ...] = (
    Spec("root", "ROOT", None, _text, "journal root folder"),
    Spec("maxConversationLength", "MAX_CONVERSATION_LENGTH", 1000, _int_in(1), "most messages one conversation may hold; an append past it archives first"),
    Spec("maxConversationsPerUser", "MAX_CONVERSATIONS_PER_USER", 50, _int_in(0), "most conversations per user; cleanup drops older archives (0: no limit)"),
    Spec("archiveThreshold", "ARCHIVE_THRESHOLD", 100, _int_in(0), "archive a conversation automatically when it reaches this many messages (0: never)"),
    Spec("retentionDays", "RETENTION_DAYS", 365, _int_in(0), "cleanup removes archives older than this many days (0: keep forever)"),
    Spec("lockTimeoutMs", "LOCK_TIMEOUT_MS", 5000, _int_in(0), "how long to wait for a user's lock, in milliseconds"),
    Spec(
        "maxFileMB",
        "MAX_FILE_MB",
        256,
        _int_in(1, 1 << 20),
        "largest conversation file dialogctl reads, in MiB (memory stays bounded); a larger one is reported and skipped, and an append archives it first",
    ),
    Spec("serverId", "SERVER_ID", "server-001", _text, "this host's name in lock owner records"),
    Spec("layout", "LAYOUT", None, _choice("flat", "sharded"), "user folder layout of a new root (existing roots: recorded or detected)"),
    Spec("shardLevels", "SHARD_LEVELS", 2, _int_in(1, 8), "sharded layout: number of prefix folders"),
    Spec("shardSize", "SHARD_SIZE", 2, _int_in(1, 16), "sharded layout: characters per prefix folder"),
    Spec("conversations", "CONVERSATIONS", None, _choice("current", "sessions"), "conversation files: current.yaml, or session-<id>.yaml per conversation"),
    Spec(
        "fileShape",
        "FILE_SHAPE",
        "sequence",
        _choice("sequence", "documents"),
        "shape of conversation files dialogctl creates or rewrites: a YAML sequence (what the servers append to), or --- documents",
    ),
    Spec(
        "fileMode",
        "FILE_MODE",
        0o600,
        _mode,
        "permissions of files dialogctl creates when set; by default those of the folder they are made in (0600 in a root dialogctl creates)",
    ),
    Spec(
        "dirMode",
        "DIR_MODE",
        0o700,
        _mode,
        "permissions of folders dialogctl creates when set; by default those of the folder they are made in (0700 for a root dialogctl creates)",
    ),
    Spec(
        "strictConfig",
        "STRICT_CONFIG",
        False,
        _flag,
        "unknown keys in config files are errors (exit 2) instead of warnings",
    ),
    Spec("backend", "BACKEND", "filesystem", _choice("filesystem", "memory"), "journal backend (dialogctl works on filesystem journals)", section=""),
    Spec("maxAgeHours", "CLEANUP_MAX_AGE_HOURS", None, _optional_hours, "cleanup default: drop messages older than this many hours", section="cleanup"),
    Spec(
        "maxInactiveHours",
        "CLEANUP_MAX_INACTIVE_HOURS",
        None,
        _optional_hours,
        "cleanup default: remove users idle longer than this many hours",
        section="cleanup",
    ),
    Spec(
        "maxRemoveShare",
        "CLEANUP_MAX_REMOVE_SHARE",
        50,
        _percent,
        "cleanup guard, in percent: a run removing more of the journal's archives or users asks first, or with --yes refuses (100: no guard)",
        section="cleanup",
    ),
)
_ALIASES = {s.name.lower(): s.name for s in SPECS}
# Keys the reference implementation reads that dialogctl has no use for: known, so never "unknown".
REFERENCE_ONLY_KEYS = {"cleanup": ("intervalHours", "dryRun")}
SECTIONS = ("filesystem", "cleanup")


class UnknownKey(NamedTuple):
    """A key in a config file's ``dialogueJournal`` tree that no setting reads (a typo, most likely)."""

    path: Path  # the config file
    section: str  # where it is: "dialogueJournal", "dialogueJournal.filesystem", ...
    key: str
    closest: str | None  # the known key it most likely meant, dotted below dialogueJournal when in another section

    def __str__(self) -> str:
        guess = f"; did you mean {self.closest}?" if self.closest else ""
        return f"config file {self.path}: unknown key {self.key} in {self.section}{guess}"


def _known_keys() -> dict[str, list[str]]:
    """Every key each part of ``dialogueJournal`` may hold ("" is dialogueJournal itself)."""
    known: dict[str, list[str]] = {"": list(SECTIONS)}
    for spec in SPECS:
        known.setdefault(spec.section, []).append(spec.name)
    for section, names in REFERENCE_ONLY_KEYS.items():
        known.setdefault(section, []).extend(names)
    return known


def _closest(key: str, section: str, known: dict[str, list[str]]) -> str | None:
    from difflib import get_close_matches

    def best(candidates: list[str]) -> str | None:
        by_lower = {c.lower(): c for c in candidates}
        found = get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.75)
        return by_lower[found[0]] if found else None

    here = best(known.get(section, []))
    if here is not None:
        return here
    elsewhere = {f"{s}.{name}" if s else name: name for s, names in known.items() if s != section for name in names}
    match = best(list(elsewhere.values()))
    return next((dotted for dotted, name in elsewhere.items() if name == match), None) if match else None


def unknown_keys(path: Path, tree: dict[str, Any]) -> list[UnknownKey]:
    """The keys of a config file's ``dialogueJournal`` tree that no setting (of dialogctl or the reference) reads."""
    known = _known_keys()
    found: list[UnknownKey] = []
    for section in ("", *SECTIONS):
        holder = tree if section == "" else tree.get(section)
        if not isinstance(holder, dict):
            continue
        where = "dialogueJournal" + (f".{section}" if section else "")
        for key in holder:
            if str(key) not in known[section]:
                found.append(UnknownKey(path, where, str(key), _closest(str(key), section, known)))
    return found


class Setting(NamedTuple):
    name: str
    value: Any
    source: str  # "flag --root", "env DIALOGUE_JOURNAL_ROOT", "poto.config.yaml (/path)", ...
    explicit: bool  # False only for built-in defaults


class Settings:
    """Every setting's value and source; read-only."""

    __slots__ = ("unknown", "values")

    def __init__(self, values: Mapping[str, Setting], unknown: Iterable[UnknownKey] = ()) -> None:
        self.values = dict(values)
        self.unknown = list(unknown)  # keys in the config files that no setting reads (the caller warns)

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def setting(self, name: str) -> Setting:
        return self.values[name]

    @property
    def root(self) -> Path:
        return Path(self["root"])

    @property
    def lock_timeout(self) -> float:
        return self["lockTimeoutMs"] / 1000.0


def canonical_name(key: str) -> str:
    name = _ALIASES.get(key.replace("-", "").replace("_", "").lower())
    if name is None:
        raise InvalidInput(f"unknown setting {key!r}; known settings: " + ", ".join(s.name for s in SPECS))
    return name


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "config.yaml"


def default_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME)) / "journal"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a config tree."""
    if isinstance(value, str):

        def expand(m: re.Match[str]) -> str:
            found = env.get(m.group(1))
            if m.group(2) is not None:  # ${VAR:-default}: the default also when VAR is empty
                return found or m.group(2)
            return found or ""

        return _VAR.sub(expand, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


MAX_CONFIG_FILE = 1 << 20  # bytes: a config file is read whole, never past this


def read_config_file(path: Path) -> tuple[dict[str, Any], list[UnknownKey]]:
    """The ``dialogueJournal`` section of a config file, as flat ``name -> value``, and the keys in it no setting reads."""
    try:
        with path.open("rb") as f:  # a FIFO is waited on, as any tool reading a named file does
            data = f.read(MAX_CONFIG_FILE + 1)
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"config file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"config file {path} is not UTF-8 (byte {exc.start})") from None
    if len(data) > MAX_CONFIG_FILE:  # /dev/zero or a huge file: never read whole
        raise InvalidInput(f"config file {path} is larger than {MAX_CONFIG_FILE >> 20} MiB; a config file is a few settings")
    from .yamlsafe import ItemError, load_yaml

    try:
        tree = load_yaml(text) if text.strip() else {}
    except ItemError as exc:
        raise InvalidInput(f"config file {path}, line {exc.line_offset + 1}: {exc.detail}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise InvalidInput(f"config file {path} is not a mapping")
    section = tree.get("dialogueJournal", {}) or {}
    if not isinstance(section, dict):
        raise InvalidInput(f"config file {path}: dialogueJournal is not a mapping")
    flat: dict[str, Any] = {}
    for spec in SPECS:
        holder = section if spec.section == "" else section.get(spec.section) or {}
        if isinstance(holder, dict) and spec.name in holder:
            flat[spec.name] = holder[spec.name]
    return interpolate(flat, os.environ), unknown_keys(path, section)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve every setting from its sources (see the module docstring)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    flags = dict(flags or {})
    layers: list[tuple[str, dict[str, Any], Path | None]] = []
    unknown: list[UnknownKey] = []
    layers.append(("flag", {k: v for k, v in flags.items() if v is not None}, None))
    env_values = {s.name: env[ENV_PREFIX + s.env] for s in SPECS if env.get(ENV_PREFIX + s.env, "") != ""}
    layers.append(("env", env_values, None))
    project = Path(config_path) if config_path is not None else cwd / PROJECT_CONFIG
    if config_path is not None or project.is_file():
        values, typos = read_config_file(project)
        layers.append((f"{PROJECT_CONFIG if config_path is None else 'config'} ({project})", values, project))
        unknown.extend(typos)
    user_file = user_config_path()
    if user_file.is_file():
        values, typos = read_config_file(user_file)
        layers.append((f"user config ({user_file})", values, user_file))
        unknown.extend(typos)

    resolved: dict[str, Setting] = {}
    for spec in SPECS:
        for kind, values, path in layers:
            if spec.name not in values:
                continue
            raw = values[spec.name]
            source = {"flag": f"flag ({flag_name(spec.name)})", "env": f"env {ENV_PREFIX}{spec.env}"}.get(kind, kind)
            try:
                value = spec.convert(raw)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"setting {spec.name} from {source}: {exc}") from None
            if spec.name == "root":
                value = _resolve_root(value, path.parent if path is not None else cwd)
            resolved[spec.name] = Setting(spec.name, value, source, True)
            break
        else:
            default = str(default_root()) if spec.name == "root" else spec.default
            resolved[spec.name] = Setting(spec.name, default, "default", False)
    if resolved["backend"].value != "filesystem":
        raise InvalidInput(f"backend {resolved['backend'].value!r} ({resolved['backend'].source}) keeps no files; dialogctl works on filesystem journals")
    if unknown and resolved["strictConfig"].value:
        more = f" (and {len(unknown) - 1} more unknown key(s))" if len(unknown) > 1 else ""
        raise InvalidInput(
            f"{unknown[0]}{more}",
            hint=f"strictConfig ({resolved['strictConfig'].source}) makes unknown keys errors; fix or remove them",
        )
    return Settings(resolved, unknown)


def flag_name(name: str) -> str:
    return {"root": "--root", "layout": "--layout", "shardLevels": "--shard-levels", "shardSize": "--shard-size"}.get(name, f"--set {name}")


def _resolve_root(value: str, base: Path) -> str:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = base / path
    return os.path.normpath(str(path))


def parse_set_options(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` options as a flags mapping."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"--set takes KEY=VALUE, got {pair!r}")
        out[canonical_name(key.strip())] = value
    return out
