"""Reading conversations: resolving what a command means, reading whole files, reading frames backwards from the end."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from ..disk import layout as L
from ..disk.storage import Folder
from ..errors import FileTooLarge, NotFound, StorageError, UnsafePath
from ..fileformat.codec import Form
from ..fileformat.reader import parse_conversation
from ..models import ConversationRef, ConversationSummary, Message
from .files import Conversation, JournalFiles

TAIL_BYTES = 4096  # how much of a file's end a tail read or an append reads first


class JournalReader(JournalFiles):
    """Reads: every read collects what it could not read in ``damage``."""

    def resolve(self, user: str, conversation: str | None = None, archive: str | None = None) -> ConversationRef:
        """The conversation a command means: an archive, a named session, or the current one."""
        L.validate_user_id(user)
        if archive is not None:
            return ConversationRef(user, "archive", L.validate_name(archive, "archive id"))
        if conversation is not None and conversation != "current":
            return ConversationRef(user, "session", L.validate_name(conversation))
        if conversation == "current" or self.layout().conversations == "current":
            return ConversationRef(user, "current")
        files = [f for f in self.conversation_files(user, include_archives=False) if f.ref.kind == "session"]
        if not files:
            return ConversationRef(user, "current")
        return files[-1].ref  # the most recently written session

    def always_there(self, ref: ConversationRef) -> bool:
        """Whether a missing file is an empty conversation rather than none at all.

        In a journal of ``current.yaml`` files a user always has a current
        conversation (empty until the first message, and again after an archive);
        a journal of sessions has no current one, and a session or archive exists
        only as its file. Anything that does not exist is "not found" (exit 3).
        """
        return ref.kind == "current" and self.layout().conversations == "current"

    def not_found(self, ref: ConversationRef) -> NotFound:
        """The error for a conversation that does not exist (its user does)."""
        if ref.kind == "current" and self.layout().conversations != "current":
            return NotFound(
                f"user {ref.user!r} has no current conversation: this journal keeps one session-<id>.yaml per conversation",
                hint=f"dialogctl list {ref.user} names its conversations; pass --conversation CID or --archive ID",
            )
        return NotFound(f"{ref.describe()} not found")

    # --- reading ---------------------------------------------------------------------

    def read(self, ref: ConversationRef, missing_ok: bool = False) -> Conversation:
        """Every intact message of one conversation; damage goes to ``self.damage`` too."""
        with self.dialogs_folder(ref.user) as dialogs:
            folder, name = self.locate(dialogs, ref)
            try:
                fd = folder.open_read(name)
                if fd is None:
                    if self.always_there(ref) or missing_ok:
                        return Conversation(ref, self.rel_path(ref), [], [])
                    raise self.not_found(ref)
                try:
                    st = os.fstat(fd)
                    from ..disk.fileops import read_all

                    data = read_all(fd, self.file_limit)
                except FileTooLarge:
                    return self.too_large(ref, st)
                finally:
                    os.close(fd)
            finally:
                if folder is not dialogs:
                    folder.close()
        return self.parse_bytes(ref, data, st.st_size, st.st_mtime)

    def read_tail(self, ref: ConversationRef, count: int) -> Conversation:
        """The last ``count`` messages, read backwards from the end of the file, frame by frame.

        Each frame gives its record's length, so only the last ``count`` records
        are read, whatever the conversation's length; their indexes come from
        the frames' message numbers. When the end of the file is not a
        contiguous run of intact dialogctl records (a file written by another
        implementation, a torn tail), the whole file is read instead, so the
        answer is always what :meth:`read` would end with.
        """
        with self.dialogs_folder(ref.user) as dialogs:
            fd = self.open_file(dialogs, ref)
        if fd is None:
            if self.always_there(ref):
                return Conversation(ref, self.rel_path(ref), [], [])
            raise self.not_found(ref)
        try:
            st = os.fstat(fd)
            found = _framed_tail(fd, st.st_size, count) if st.st_size else (0, [], "documents")
            if found is None:
                from ..disk.fileops import read_all

                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    data = read_all(fd, self.file_limit)
                except FileTooLarge:
                    return self.too_large(ref, st)
                conv = self.parse_bytes(ref, data, st.st_size, st.st_mtime)
                first = max(0, len(conv.messages) - count)
                return conv._replace(messages=conv.messages[first:], first_index=first)
        finally:
            os.close(fd)
        first_index, messages, form = found
        return Conversation(ref, self.rel_path(ref), messages, [], st.st_size, st.st_mtime, form, first_index)

    def open_file(self, dialogs: Folder, ref: ConversationRef) -> int | None:
        """A read descriptor for a conversation file of the user whose ``dialogs/`` is open; None if absent."""
        folder, name = self.locate(dialogs, ref)
        try:
            return folder.open_read(name)
        finally:
            if folder is not dialogs:
                folder.close()

    def parse_bytes(self, ref: ConversationRef, data: bytes, size: int, mtime: float) -> Conversation:
        rel = self.rel_path(ref)
        parsed = parse_conversation(data, rel)
        self.damage.extend(parsed.damage)
        return Conversation(ref, rel, parsed.messages, parsed.damage, size, mtime, parsed.form)

    def conversations(self, users: Iterable[str] | None = None, include_archives: bool = True, active: bool = True) -> Iterator[Conversation]:
        """Stream every selected conversation, user by user (all users: in one pass over the tree)."""
        if users is None:
            for _user, dialogs, files in self.walk_open():
                archived: Folder | None = None
                try:
                    for f in files:
                        if f.ref.kind == "archive":
                            if not include_archives:
                                continue
                            try:
                                if archived is None:
                                    archived = dialogs.open_child(L.ARCHIVE_DIR)
                                conv = self._read_in(archived, L.archive_file(f.ref.id or ""), f.ref)
                            except NotFound:  # archived/ went away while we looked
                                continue
                            except StorageError as exc:
                                self.note_unreadable(f.rel_path, exc, f.ref.user)
                                continue
                        elif not active:
                            continue
                        else:
                            try:
                                conv = self._read_in(dialogs, f.rel_path.rsplit("/", 1)[1], f.ref)
                            except StorageError as exc:
                                self.note_unreadable(f.rel_path, exc, f.ref.user)
                                continue
                        if conv is not None:
                            yield conv
                finally:
                    if archived is not None:
                        archived.close()
            return
        for user in users:
            for f in self.conversation_files(user, include_archives=include_archives):
                if not active and f.ref.kind != "archive":
                    continue
                try:
                    conv = self.read(f.ref, missing_ok=True)
                except (NotFound, UnsafePath):
                    raise
                except StorageError as exc:  # one file we may not read: the user's others are still read
                    self.note_unreadable(f.rel_path, exc, user)
                    continue
                yield conv

    def _read_in(self, folder: Folder, name: str, ref: ConversationRef) -> Conversation | None:
        """One conversation file in an open folder; None if it is gone."""
        from ..disk.fileops import read_all

        fd = folder.open_read(name)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            data = read_all(fd, self.file_limit)
        except FileTooLarge:
            return self.too_large(ref, st)
        except OSError as exc:
            from ..errors import storage_error

            raise storage_error(exc, "read", folder.child_path(name)) from None
        finally:
            os.close(fd)
        return self.parse_bytes(ref, data, st.st_size, st.st_mtime)

    def summaries(self, user: str) -> list[ConversationSummary]:
        """One user's conversations summarised, read from the files."""
        from .catalog import summarize

        return [summarize(self.read(f.ref, missing_ok=True)) for f in self.conversation_files(user)]


def _framed_tail(fd: int, size: int, count: int) -> tuple[int, list[Message], Form] | None:
    """(index of the first, messages, shape) of the last ``count`` records, or None if the end is not all framed."""
    import zlib

    from ..fileformat.codec import TRAILER_RE, decode_record

    found: list[Message] = []
    end = size  # the end of the trailer line looked at next
    buffer, buffer_start = b"", size  # the bytes [buffer_start, size) read so far
    form: Form = "documents"
    n = 0
    batch: tuple[int, int] | None = None  # the batch of the record read last (the next one in the file)
    while True:
        if end - buffer_start < 128:  # the trailer line may not be in the buffer yet
            # One page first, then what the records read so far say the rest will take.
            want = max(TAIL_BYTES, (size - end) // len(found) * (count - len(found))) if found else TAIL_BYTES
            new_start = max(0, buffer_start - want)
            buffer = os.pread(fd, buffer_start - new_start, new_start) + buffer
            buffer_start = new_start
        # Each write of ours begins with a line break (see _append_locked): skip empty lines.
        line_end = end - buffer_start
        while line_end > 0 and buffer[line_end - 1] == 10:
            line_end -= 1
        line_start = buffer.rfind(b"\n", 0, line_end) + 1
        m = TRAILER_RE.fullmatch(buffer, line_start, line_end)
        if m is None or (found and int(m.group(1)) != n - 1):
            return None
        n, length, crc = int(m.group(1)), int(m.group(4)), int(m.group(5), 16)
        # A record of a batch is read only when the batch's last record follows it: the
        # last record of the file must not be in the middle of one (a torn batch, or one
        # being written), nor may a record read before this one belong to another batch.
        mine = (int(m.group(2)), int(m.group(3))) if m.group(3) is not None else None
        if mine is not None and n != mine[1] and mine != batch:
            return None
        batch = mine
        trailer_start = buffer_start + line_start  # offsets in the file from here on
        record_start = trailer_start - length
        if record_start < 0 or n < 1:
            return None
        if record_start <= buffer_start:  # read the record and the byte before it
            new_start = max(0, record_start - 1)
            buffer = os.pread(fd, buffer_start - new_start, new_start) + buffer
            buffer_start = new_start
        body = buffer[record_start - buffer_start : trailer_start - buffer_start]
        if record_start > 0 and buffer[record_start - buffer_start - 1] != 10:
            return None
        if zlib.crc32(body) != crc:
            return None
        msg = decode_record(body)
        if msg is None:
            return None
        if not found:
            form = "documents" if body.startswith(b"---") else "sequence"
        found.append(msg)
        if n == 1 or record_start == 0:
            if n != 1 or record_start > TAIL_BYTES or os.pread(fd, record_start, 0).strip(b"\n"):
                return None  # the frames' count does not start where the file starts
            break
        if len(found) >= max(count, 1):
            break
        end = record_start
    found.reverse()
    if count <= 0:  # only the count was wanted
        return n - 1 + len(found), [], form
    return n - 1, found, form
