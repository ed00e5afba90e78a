"""``json`` (the reference implementation's shape) and ``jsonl`` (one message per line)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

from ...errors import InvalidInput
from ...fileformat.codec import input_message
from ..reading import (
    IDENTITY_FIELDS,
    MESSAGE_FIELDS,
    OBJECT_FIELDS,
    Found,
    ImportInput,
    JsonStream,
    conversation_identity,
    load_json,
    no_duplicates,
    numbered_lines,
    refuse_unknown,
)
from ..records import ExportFormat, ExportResult, Formatted, dumps, export_time, text_out, write_each
from ..selection import Selected


def write_conversation_object(out: IO[str], conv: Selected, exported_at: str) -> None:
    """One conversation in the reference implementation's export shape plus its identity, message by message.

    The text is exactly ``json.dumps`` of the whole object, without ever
    holding the whole conversation as one string.
    """
    head: dict[str, Any] = {"userId": conv.ref.user, "conversation": conv.ref.name, "archived": conv.ref.archived}
    head["timestamp"] = exported_at
    head["messageCount"] = len(conv.messages)
    head["messages"] = []
    out.write(dumps(head)[: -len("[]}")] + "[")
    for n, ((_, msg), mid) in enumerate(zip(conv.messages, conv.id_list(), strict=True)):
        out.write((", " if n else "") + dumps({**msg.to_raw(), "message_id": mid}))
    out.write("]}")


def write_json(out: IO[str], selected: Iterable[Selected]) -> ExportResult:
    """An array of conversations, however many were selected (one, none, or the whole journal), one per line.

    One shape for every selection, so a script reads ``.[0]`` whatever it
    asked for. (Earlier dialogctl wrote a lone object, without
    ``conversation`` and ``archived``, for one conversation: the importer still
    reads that form.)
    """
    exported_at = export_time()
    conversations = messages = 0
    out.write("[")
    for conv in selected:
        out.write("\n" if not conversations else ",\n")
        write_conversation_object(out, conv, exported_at)
        conversations += 1
        messages += len(conv.messages)
    out.write("\n]\n" if conversations else "]\n")
    return ExportResult(conversations, messages, {})


def write_jsonl(out: IO[str], selected: Iterable[Selected | Formatted]) -> ExportResult:
    """One :func:`message_record` per line, byte for byte what ``json.dumps`` of it gives (see :func:`jsonl_text`)."""
    return write_each(out, selected, jsonl_text)


def jsonl_text(conv: Selected) -> str:
    """A conversation's JSONL lines.

    Each line is assembled from pieces (the identity once per conversation,
    each string through the JSON encoder's own string escaper): the export
    spends its time reading, not building dictionaries.
    """
    from json.encoder import encode_basestring as text  # what json.dumps(ensure_ascii=False) uses

    if not conv.messages:
        return ""
    head = f'{{"user": {text(conv.ref.user)}, "conversation": {text(conv.ref.name)}, "archived": {"true" if conv.ref.archived else "false"}, "index": '
    return "".join(
        [
            f'{head}{index}, "role": {text(msg.role)}, "content": {text(msg.content)}, "timestamp": {text(msg.timestamp)}, '
            f'"metadata": {"null" if msg.metadata is None else dumps(msg.metadata)}, "message_id": "{mid}"}}\n'
            for (index, msg), mid in zip(conv.messages, conv.id_list(), strict=True)
        ]
    )


JSON = ExportFormat(
    "json",
    "an array of conversations, each the reference shape {userId, timestamp, messageCount, messages} with conversation and archived",
    lambda target, conversations, options: write_json(text_out(target), cast(Iterable[Selected], conversations)),
    read=lambda data, source, now, raw_csv: json_records(data, source, now),
    import_help="the reference export {userId, messages...} or dialogctl's",
)
JSONL = ExportFormat(
    "jsonl",
    "one message per line",
    lambda target, conversations, options: write_jsonl(text_out(target), conversations),
    text=lambda conv, options: jsonl_text(conv),
    read=lambda data, source, now, raw_csv: jsonl_records(data, source, now),
)


# --- reading ----------------------------------------------------------------------------


def json_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    stream = JsonStream(data.text(source), source)
    start = stream.peek()
    if start == "{":
        yield from json_object(stream, source, "", now)
    elif start == "[":
        for number, _ in enumerate(stream.elements(source, whole=False)):
            if stream.peek() != "{":
                stream.value(source)
                raise InvalidInput(f"{source}: [{number}]: expected an object with userId and messages")
            yield from json_object(stream, source, f"[{number}].", now)
    else:
        if start:
            stream.value(source)
            stream.end()
            raise InvalidInput(f"{source}: expected an object with userId and messages, or an array of them")
        raise stream.error("Expecting value", stream.base + stream.pos)
    stream.end()


def json_object(stream: JsonStream, source: str, path: str, now: str) -> Iterator[Found]:
    """One conversation object, its messages checked and handed on one at a time as they are read."""
    where = f"{source}: {path.rstrip('.') or 'the top-level object'}"
    pairs: list[tuple[str, Any]] = []
    count: int | None = None
    for key, is_array in stream.members(where):
        if key == "messages" and is_array:
            count = 0
            for raw in stream.elements(where):
                at = f"{source}: {path}messages[{count}]"
                if not isinstance(raw, dict):
                    raise InvalidInput(f"{at}: expected an object with role, content and timestamp")
                refuse_unknown(raw, MESSAGE_FIELDS | {"index", "message_id"}, at)
                yield None, input_message(raw, at, now)
                count += 1
            pairs.append((key, None))
        else:
            pairs.append((key, stream.value(where)))
    try:
        obj = no_duplicates(pairs)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    refuse_unknown(obj, OBJECT_FIELDS, where)
    if count is None:
        raise InvalidInput(f"{where}: field 'messages' must be an array")
    expected = obj.get("messageCount")
    if expected is not None and expected != count:
        raise InvalidInput(f"{where}: messageCount says {expected} but messages holds {count}")
    yield conversation_identity(obj.get("userId", obj.get("user")), obj.get("conversation"), obj.get("archived"), where), None


def jsonl_records(data: ImportInput, source: str, now: str) -> Iterator[Found]:
    for number, line in numbered_lines(data, source):
        where = f"{source} line {number}"
        raw = load_json(line, where)
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where}: expected a JSON object")
        refuse_unknown(raw, MESSAGE_FIELDS | IDENTITY_FIELDS, where)
        identity = conversation_identity(raw.get("user"), raw.get("conversation"), raw.get("archived"), where)
        yield identity, input_message(raw, where, now)
