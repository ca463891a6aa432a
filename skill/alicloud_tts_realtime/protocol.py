"""Typed models of every DashScope realtime TTS event, shared by the client and the emulator.

Each event is a frozen pydantic model whose ``type`` is a literal; :func:`parse_server_event` and
:func:`parse_client_event` turn one JSON text frame into one event, and :func:`dump_event` turns an
event back into a frame. Parsing is tolerant where the real service is loose (unknown fields are
kept, missing ids default) and strict where a wrong shape means a broken peer: a known ``type``
whose fields do not fit raises :class:`~.errors.ProtocolViolationError`. An unknown ``type`` parses
to :class:`UnknownEvent`, which callers log and skip.

Field shapes follow ``dashscope-protocol.md`` §3.2–§3.4; the observed frames quoted there are the
round-trip fixtures of ``tests/test_protocol.py``.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Annotated, Any, Literal, TypeAlias, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ProtocolViolationError
from .quoting import quote

__all__ = [
    "CLIENT_EVENT_TYPES",
    "RESPONSE_CYCLE",
    "SERVER_EVENT_TYPES",
    "ClientEvent",
    "ContentPart",
    "ErrorDetail",
    "ErrorEvent",
    "InputTextBufferAppend",
    "InputTextBufferClear",
    "InputTextBufferCleared",
    "InputTextBufferCommit",
    "InputTextBufferCommitted",
    "Item",
    "ResponseAudioDelta",
    "ResponseAudioDone",
    "ResponseCancel",
    "ResponseContentPartAdded",
    "ResponseContentPartDone",
    "ResponseCreated",
    "ResponseDone",
    "ResponseInfo",
    "ResponseOutputItemAdded",
    "ResponseOutputItemDone",
    "ServerEvent",
    "SessionConfig",
    "SessionCreated",
    "SessionFinish",
    "SessionFinished",
    "SessionUpdate",
    "SessionUpdated",
    "UnknownEvent",
    "Usage",
    "dump_event",
    "new_id",
    "parse_client_event",
    "parse_server_event",
]

_BASE62 = string.digits + string.ascii_letters


def new_id(prefix: str) -> str:
    """Return an id in the service's style: ``prefix_`` + 21 base62 characters (§3.1).

    The digits of one 126-bit random number (62**21 is just under 2**126): about 4 µs, where 21
    calls of ``secrets.choice`` took 70 µs, a cost every event sent paid (``benchmarks/pool.py``).
    """
    number, digits = secrets.randbits(126), []
    for _ in range(21):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return prefix + "_" + "".join(digits)


def _event_id() -> str:
    return new_id("event")


class _Model(BaseModel):
    # Frozen values; unknown fields are kept (the service adds fields over time) so that a frame
    # survives a round trip through parse and dump.
    model_config = ConfigDict(frozen=True, extra="allow")


class _Event(_Model):
    event_id: str = Field(default_factory=_event_id)


# --- shared payloads -------------------------------------------------------------------------


class SessionConfig(_Model):
    """The ``session`` object: sent in ``session.update``, echoed in ``session.created/updated``.

    Every field is optional so that a client sends only what it sets (§3.3); unknown keys such as
    ``enable_tn`` pass through.
    """

    id: str | None = None
    object: str | None = None
    model: str | None = None
    voice: str | None = None
    mode: Literal["server_commit", "commit"] | None = None
    response_format: str | None = None
    sample_rate: int | None = None
    language_type: str | None = None
    instructions: str | None = None
    optimize_instructions: bool | None = None
    speech_rate: float | None = None
    pitch_rate: float | None = None
    volume: float | None = None
    bit_rate: int | None = None


class Usage(_Model):
    """``usage`` of ``response.done``: billed ``characters`` (Qwen3) and informational tokens (§3.9)."""

    characters: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    input_tokens_details: dict[str, int] | None = None
    output_tokens_details: dict[str, int] | None = None


class ContentPart(_Model):
    type: str = "audio"
    text: str | None = None
    transcript: str | None = None


class Item(_Model):
    id: str
    object: str = "realtime.item"
    type: str = "message"
    status: str = "in_progress"
    role: str = "assistant"
    content: list[ContentPart] | None = None


class ResponseInfo(_Model):
    id: str
    object: str = "realtime.response"
    conversation_id: str = ""
    status: str = "in_progress"
    voice: str | None = None
    modalities: list[str] | None = None
    output: list[Item] = Field(default_factory=list)
    usage: Usage | None = None


class ErrorDetail(_Model):
    """``error`` payload; the newer docs omit ``type`` and ``param`` (§3.4)."""

    type: str | None = None
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


# --- client events (§3.2) ----------------------------------------------------------------------


class SessionUpdate(_Event):
    type: Literal["session.update"] = "session.update"
    session: SessionConfig


class InputTextBufferAppend(_Event):
    type: Literal["input_text_buffer.append"] = "input_text_buffer.append"
    text: str


class InputTextBufferCommit(_Event):
    type: Literal["input_text_buffer.commit"] = "input_text_buffer.commit"


class InputTextBufferClear(_Event):
    type: Literal["input_text_buffer.clear"] = "input_text_buffer.clear"


class SessionFinish(_Event):
    type: Literal["session.finish"] = "session.finish"


class ResponseCancel(_Event):
    """Sent by both SDKs, undocumented for TTS (§3.2)."""

    type: Literal["response.cancel"] = "response.cancel"


# --- server events (§3.4) ----------------------------------------------------------------------


class SessionCreated(_Event):
    type: Literal["session.created"] = "session.created"
    session: SessionConfig


class SessionUpdated(_Event):
    type: Literal["session.updated"] = "session.updated"
    session: SessionConfig


class InputTextBufferCommitted(_Event):
    type: Literal["input_text_buffer.committed"] = "input_text_buffer.committed"
    item_id: str = ""


class InputTextBufferCleared(_Event):
    type: Literal["input_text_buffer.cleared"] = "input_text_buffer.cleared"


class ResponseCreated(_Event):
    type: Literal["response.created"] = "response.created"
    response: ResponseInfo


class ResponseOutputItemAdded(_Event):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: Item


class _ContentEvent(_Event):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class ResponseContentPartAdded(_ContentEvent):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ContentPart = Field(default_factory=lambda: ContentPart(text=""))


class ResponseAudioDelta(_ContentEvent):
    type: Literal["response.audio.delta"] = "response.audio.delta"
    delta: str


class ResponseAudioDone(_ContentEvent):
    type: Literal["response.audio.done"] = "response.audio.done"


class ResponseContentPartDone(_ContentEvent):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ContentPart = Field(default_factory=lambda: ContentPart(text=""))


class ResponseOutputItemDone(_Event):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: Item


class ResponseDone(_Event):
    type: Literal["response.done"] = "response.done"
    response: ResponseInfo


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    error: ErrorDetail


class SessionFinished(_Event):
    type: Literal["session.finished"] = "session.finished"


class UnknownEvent(_Model):
    """A frame whose ``type`` this package does not know; log it and go on."""

    type: str
    raw: dict[str, Any] = Field(default_factory=dict)


ClientEvent: TypeAlias = Annotated[
    Union[
        SessionUpdate,
        InputTextBufferAppend,
        InputTextBufferCommit,
        InputTextBufferClear,
        SessionFinish,
        ResponseCancel,
    ],
    Field(discriminator="type"),
]
ServerEvent: TypeAlias = Annotated[
    Union[
        SessionCreated,
        SessionUpdated,
        InputTextBufferCommitted,
        InputTextBufferCleared,
        ResponseCreated,
        ResponseOutputItemAdded,
        ResponseContentPartAdded,
        ResponseAudioDelta,
        ResponseAudioDone,
        ResponseContentPartDone,
        ResponseOutputItemDone,
        ResponseDone,
        ErrorEvent,
        SessionFinished,
    ],
    Field(discriminator="type"),
]

CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default
    for m in ClientEvent.__origin__.__args__  # type: ignore[attr-defined]
)
SERVER_EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default
    for m in ServerEvent.__origin__.__args__  # type: ignore[attr-defined]
)

# The observed order of one response (§3.5); the emulator emits it, the client tolerates variants.
RESPONSE_CYCLE: tuple[str, ...] = (
    "response.created",
    "response.output_item.added",
    "response.content_part.added",
    "response.audio.delta",
    "response.audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
)

_CLIENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientEvent)
_SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerEvent)


def _load(frame: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(frame, dict):
        return frame
    if isinstance(frame, bytes):
        # §3.1: the service sends text frames only; a binary frame is a protocol violation.
        raise ProtocolViolationError("Received a binary frame; the realtime protocol uses JSON text frames only.")
    try:
        data = json.loads(frame)
    except json.JSONDecodeError:
        raise ProtocolViolationError(f"Received a frame that is not JSON ({len(frame)} characters).") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolViolationError("Received a JSON frame without a string 'type'.")
    return data


def _parse(frame: str | bytes | dict[str, Any], adapter: TypeAdapter[Any], known: frozenset[str]) -> Any:
    data = _load(frame)
    if data["type"] not in known:
        return UnknownEvent(type=data["type"], raw=data)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"][1:])) or "event" for e in exc.errors()[:3])
        raise ProtocolViolationError(f"Malformed {quote(data['type'])} event (bad fields: {where}).") from None


def parse_server_event(frame: str | bytes | dict[str, Any]) -> ServerEvent | UnknownEvent:
    """Parse one frame received from the service.

    Raises:
        ProtocolViolationError: The frame is binary, not JSON, or a known event with wrong fields.
    """
    result: ServerEvent | UnknownEvent = _parse(frame, _SERVER_ADAPTER, SERVER_EVENT_TYPES)
    return result


def parse_client_event(frame: str | bytes | dict[str, Any]) -> ClientEvent | UnknownEvent:
    """Parse one frame received from a client (the emulator's side).

    Raises:
        ProtocolViolationError: The frame is binary, not JSON, or a known event with wrong fields.
    """
    result: ClientEvent | UnknownEvent = _parse(frame, _CLIENT_ADAPTER, CLIENT_EVENT_TYPES)
    return result


def dump_event(event: BaseModel) -> str:
    """Serialize an event to one JSON text frame, leaving out unset optional fields."""
    if isinstance(event, UnknownEvent):
        return json.dumps(event.raw, ensure_ascii=False)
    return event.model_dump_json(exclude_none=True)
