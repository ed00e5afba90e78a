"""The one walk of the ``users/`` tree: every command that looks at all users (the journal, verify, repair, the catalog, detection, completion) goes through :func:`walk_users_tree`.

The rule it keeps for all of them:

- folders are opened one name at a time relative to their parent's handle
  (``O_NOFOLLOW``): a symlink is listed, never entered;
- names starting with ``.`` (dialogctl's temporary and half-removed folders,
  and hidden folders) are never entered, nor is a user's ``dialogs/``;
- depth first, in name order, a folder before the folders below it (a user
  folder's other sub-folders may hold other users, so they are walked too);
- a folder that cannot be listed or opened is told to ``on_unreadable``
  (its path below the root and the error) and the walk goes on without it;
  one removed while the walk runs is skipped without a word.

At most one open handle per level of depth, whatever the number of users.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Generic, NamedTuple, TypeVar

from ..errors import NotFound, StorageError, storage_error
from .handle import FolderHandle
from .paths import DIALOGS_DIR, USERS_DIR


class Entry(NamedTuple):
    name: str
    is_dir: bool  # a folder, not through a symlink
    is_link: bool


Handle = TypeVar("Handle", bound=FolderHandle)


class TreeFolder(NamedTuple, Generic[Handle]):
    """One folder of the walk, open until the walk moves past the folders below it."""

    parts: tuple[str, ...]  # below users/
    folder: Handle  # the kind of handle the walk was given (a Folder when the caller changes things)
    entries: list[Entry]  # in name order

    @property
    def rel(self) -> str:
        """Its path below the root."""
        return "/".join((USERS_DIR, *self.parts))

    @property
    def holds_dialogs(self) -> bool:
        """A user folder: below ``users/`` and holding a ``dialogs/`` folder (not a symlink)."""
        return bool(self.parts) and Entry(DIALOGS_DIR, True, False) in self.entries


Unreadable = Callable[[str, StorageError], None]


def open_users(root: str) -> FolderHandle | None:
    """The root's ``users/`` folder, opened without following a symlink at ``users``; None when there is none (yet)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise storage_error(exc, "open journal root", root) from None
    with FolderHandle(fd, root) as handle:
        try:
            return handle.open_child(USERS_DIR)
        except NotFound:
            return None


def walk_users_tree(
    users: Handle,
    on_unreadable: Unreadable,
    enter: Callable[[tuple[str, ...], str], bool] | None = None,
) -> Iterator[TreeFolder[Handle]]:
    """Every folder below ``users`` (itself first, with parts ``()``), by the rule of this module.

    ``enter(parts, name)``, when given, says whether to walk into folder
    ``name`` of the folder at ``parts`` (completion prunes the tree by prefix).
    The yielded handle stays open while the caller looks at it and until the
    folders below it are walked; the walk closes every handle it opened.
    """
    # stack[i]: an open folder and the names of its sub-folders still to walk
    stack: list[tuple[tuple[str, ...], Handle, list[str]]] = []
    top = _listed((), users, on_unreadable)
    if top is None:
        return
    try:
        yield top
        stack.append(((), users, _below(top, enter)))
        while stack:
            parts, folder, todo = stack[-1]
            if not todo:
                stack.pop()
                if parts:
                    folder.close()
                continue
            name = todo.pop()
            child_parts = (*parts, name)
            try:
                child = folder.open_child(name)
            except NotFound:
                continue
            except StorageError as exc:  # UnsafePath too: replaced by a symlink since it was listed
                on_unreadable("/".join((USERS_DIR, *child_parts)), exc)
                continue
            listed = _listed(child_parts, child, on_unreadable)
            if listed is None:
                child.close()
                continue
            stack.append((child_parts, child, []))
            yield listed
            stack[-1] = (child_parts, child, _below(listed, enter))
    finally:
        for parts, folder, _ in stack:
            if parts:
                folder.close()


def _listed(parts: tuple[str, ...], folder: Handle, on_unreadable: Unreadable) -> TreeFolder[Handle] | None:
    try:
        entries = [Entry(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in folder.entries()]
    except NotFound:
        return None
    except StorageError as exc:
        on_unreadable("/".join((USERS_DIR, *parts)), exc)
        return None
    entries.sort()
    return TreeFolder(parts, folder, entries)


def _below(listed: TreeFolder[Handle], enter: Callable[[tuple[str, ...], str], bool] | None) -> list[str]:
    """The sub-folders to walk, last name first (the stack pops them in name order)."""
    names = [e.name for e in reversed(listed.entries) if e.is_dir and not e.name.startswith(".") and not (listed.parts and e.name == DIALOGS_DIR)]
    return names if enter is None else [n for n in names if enter(listed.parts, n)]
