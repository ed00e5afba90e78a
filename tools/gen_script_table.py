"""Generate ``dialogctl/script_table.py``: the Unicode scripts of the characters ids may hold.

Id validation (:mod:`dialogctl.disk.layout`) refuses ids that mix scripts (Unicode
TR39, section 5.1). Python's :mod:`unicodedata` has no Script property, so this
compact table is generated once and checked in. The source is the Unicode
Character Database's ``Scripts.txt`` and ``ScriptExtensions.txt`` as shipped by
fontTools (``fontTools.unicodedata``); nothing here is needed at run time::

    pip install fonttools && python tools/gen_script_table.py > dialogctl/script_table.py

Only letters, marks and digits (the categories ids may hold) above ASCII are
described, and characters this Python does not know yet (so that a newer
Python, knowing more of them, finds their scripts): other characters are
refused before their script is asked, so they may share a neighbour's range,
which keeps the table small. Common and Inherited characters with no script
extensions are written as ``*`` (any script).
"""

from __future__ import annotations

import sys
import unicodedata

from fontTools import unicodedata as ucd
from fontTools.unicodedata import Scripts


def script_set(char: str) -> str:
    scripts = set(ucd.script_extension(char))
    if scripts & {"Zyyy", "Zinh"} or not scripts or scripts == {"Zzzz"}:
        return "*"
    return " ".join(sorted(scripts))


def source_version() -> str:
    import re

    from fontTools.unicodedata import ScriptExtensions

    with open(ScriptExtensions.__file__, encoding="utf-8") as fh:
        found = re.search(r"ScriptExtensions-([0-9.]+)\.txt", fh.read(4096))
    return found.group(1) if found else "(unknown)"


def main() -> None:
    starts: list[int] = []
    sets: list[str] = []
    for cp in range(0x80, sys.maxunicode + 1):
        char = chr(cp)
        category = unicodedata.category(char)
        if (category[0] not in "LNM" and category != "Cn") or ucd.script(char) == "Zzzz":
            continue  # refused before its script is asked: any range may hold it
        value = script_set(char)
        if sets and sets[-1] == value:
            continue
        starts.append(cp)
        sets.append(value)
    names = sorted({s for value in sets for s in value.split() if s != "*"})
    index = {value: i for i, value in enumerate(sorted(set(sets)))}
    out = sys.stdout
    out.write('"""Unicode scripts of the characters ids may hold, for the mixed-script rule (generated: tools/gen_script_table.py; do not edit).\n\n')
    out.write(f"Unicode {source_version()} Script_Extensions, for the letters, marks and digits of Unicode {unicodedata.unidata_version}\n")
    out.write("(Python's unicodedata) and the characters it does not know. ``RANGES[i]`` starts a run of code points whose script set is ``SETS[KINDS[i]]``\n")
    out.write('(``*``: Common or Inherited, any script); a run lasts until the next start.\n"""\n\n')
    out.write("# fmt: off\n")
    out.write("SETS = (\n")
    for value in sorted(set(sets)):
        out.write(f"    {value!r},\n")
    out.write(")\n")
    out.write("RANGES = (\n")
    for i in range(0, len(starts), 12):
        out.write("    " + ", ".join(f"0x{cp:X}" for cp in starts[i : i + 12]) + ",\n")
    out.write(")\n")
    out.write("KINDS = (\n")
    for i in range(0, len(sets), 24):
        out.write("    " + ", ".join(str(index[v]) for v in sets[i : i + 24]) + ",\n")
    out.write(")\n")
    out.write("NAMES = {\n")
    for code in names:
        out.write(f"    {code!r}: {Scripts.NAMES.get(code, code).replace('_', ' ')!r},\n")
    out.write("}\n")
    out.write("# fmt: on\n")


if __name__ == "__main__":
    main()
