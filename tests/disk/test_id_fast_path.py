"""The one-pattern fast path of id validation accepts only what the full check accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl.disk import layout as L
from dialogctl.errors import InvalidUserId

from ..conftest import Cli


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from("aZ09-_.@+=:~, /é\x00\u202e"), max_size=210), st.booleans())
def test_fast_path_agrees_with_the_full_check(value: str, names: bool) -> None:
    check = L.validate_name if names else L.validate_user_id
    try:
        full: str | None = check(value)
    except InvalidUserId:
        full = None
    if L._plainly_valid(value, names):
        assert full == value
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(L, "_plainly_valid", lambda *a: False)
        try:
            slow: str | None = check(value)
        except InvalidUserId:
            slow = None
    assert slow == full


# --- look-alike ids: one script per id (Unicode TR39, "highly restrictive") ------------------

MIXED = ["аlice", "alicе", "αlice", "Ωmega", "pаypal", "user-محمد", "ユーザーalice-ア-а", "user١", "١1"]
SINGLE = ["алиса", "μαρία", "東京ユーザー", "사용자", "user-東京", "ab가", "漢字かな", "ㄅ漢", "é-user", "ßtraße", "محمد", "मनोज", "алиса-42", "user_1"]


@pytest.mark.parametrize("value", MIXED)
def test_mixed_script_ids_are_refused(value: str) -> None:
    for check in (L.validate_user_id, L.validate_name):
        with pytest.raises(InvalidUserId, match="mixes"):
            check(value)


@pytest.mark.parametrize("value", SINGLE)
def test_single_script_ids_are_accepted(value: str) -> None:
    assert L.validate_user_id(value) == value
    assert L.validate_name(value) == value


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(0x430, 0x44F), (0x3B1, 0x3C9), (0x5D0, 0x5EA), (0xAC00, 0xD7A3), (0x3041, 0x3096), (0x4E00, 0x9FFF), (0x61, 0x7A)]),
    st.data(),
)
def test_one_script_passes_and_one_latin_letter_in_it_does_not(block: tuple[int, int], data: st.DataObject) -> None:
    letters = st.integers(*block).map(chr)
    word = data.draw(st.text(letters, min_size=2, max_size=20))
    assert L.mixed_scripts(word) is None
    assert L.mixed_scripts(word + "-2024") is None  # digits and punctuation fit any script
    if block[0] != 0x61:
        spliced = word[:1] + data.draw(st.sampled_from("aeopcx")) + word[1:]
        latin_ok = block[0] in (0xAC00, 0x3041, 0x4E00)  # Latin with Han, Kana or Hangul is "highly restrictive"
        assert (L.mixed_scripts(spliced) is None) == latin_ok, spliced


def test_a_look_alike_id_is_refused_before_anything_is_written(tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "journal"
    refused = cli("--root", str(root), "append", "аlice", "hi")
    assert refused.exit_code == 2 and "mixes the Cyrillic and Latin scripts" in refused.stderr and not root.exists()
    assert cli("--root", str(root), "append", "алиса", "hi").exit_code == 0
    assert cli("--root", str(root), "append", "東京ユーザー", "hi").exit_code == 0
    refused = cli("--root", str(root), "archive", "алиса", "--id", "аrchive-2024")  # Cyrillic а, Latin rest
    assert refused.exit_code == 2 and "archive id" in refused.stderr
    assert cli("--root", str(root), "archive", "алиса", "--id", "архив-2024").exit_code == 0
    assert {u["user"] for u in cli.json("--root", str(root), "list", "-f", "json")} == {"алиса", "東京ユーザー"}
