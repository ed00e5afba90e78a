"""The one-pattern fast path of id validation accepts only what the full check accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogctl import layout as L
from dialogctl.errors import InvalidUserId


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
