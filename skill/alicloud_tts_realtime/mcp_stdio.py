"""The stdio transport of the MCP server: every line gets an answer, even one that is not a message.

The MCP SDK's ``stdio_server`` (mcp 2.3.0) hands a line it cannot validate to the session as an
exception, which is logged and never answered: a client that sent malformed JSON, a raw NUL, a
``\\ud800`` escape, a batch, string ``params``, a number too large to parse or an ``id`` that is
not a string or an integer waits until its own timeout. :func:`run_stdio` feeds the SDK's
transport only lines that its own adapter accepts, and answers every other line with a JSON-RPC
error: ``-32700`` (parse error) when the line is not JSON, or not valid Unicode, and ``-32600``
(invalid request) when it is JSON but not a JSON-RPC 2.0 message, with the request's ``id`` when
it can be read. The HTTP transport already answers such bodies with 400.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import anyio
import anyio.abc
from mcp import types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from .quoting import quote

__all__ = ["INVALID_REQUEST", "PARSE_ERROR", "check_line", "run_stdio"]

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
_MAX_INT_DIGITS = 40  # ids and arguments are small; Python refuses ints over 4,300 digits anyway


class _HugeNumber:
    """Stands in for a number too large to parse, so that the rest of the line (its id) is still read."""


def _parse_int(text: str) -> int | _HugeNumber:
    return int(text) if len(text.lstrip("-")) <= _MAX_INT_DIGITS else _HugeNumber()


def _loads(line: str, *, strict: bool = True) -> Any:
    return json.loads(line, strict=strict, parse_int=_parse_int)


def _request_id(data: Any) -> int | str | None:
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return None


def _contains(data: Any, kind: type) -> bool:
    if isinstance(data, kind):
        return True
    if isinstance(data, dict):
        return any(_contains(key, kind) or _contains(value, kind) for key, value in data.items())
    if isinstance(data, list):
        return any(_contains(item, kind) for item in data)
    return False


def _has_lone_surrogate(data: Any) -> bool:
    if isinstance(data, str):
        return any("\ud800" <= char <= "\udfff" for char in data)
    if isinstance(data, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(value) for key, value in data.items())
    if isinstance(data, list):
        return any(_has_lone_surrogate(item) for item in data)
    return False


def _error(code: int, message: str, request_id: int | str | None) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


def check_line(line: str) -> types.JSONRPCError | None:
    """None when the SDK can handle ``line``; else the JSON-RPC error that answers it."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError:
        pass
    else:
        if not isinstance(message, types.JSONRPCNotification):
            return None
        try:
            has_id = "id" in _loads(line)
        except (ValueError, RecursionError, TypeError):
            has_id = False
        if not has_id:
            return None
        # e.g. "id": 1e999: the SDK reads a notification and would answer nothing.
        return _error(INVALID_REQUEST, "Invalid Request: id must be a string or an integer.", None)
    try:
        data = _loads(line)
    except (ValueError, RecursionError):
        try:  # raw control characters: not JSON, but the id may still be readable
            request_id = _request_id(_loads(line, strict=False))
        except (ValueError, RecursionError):
            request_id = None
        return _error(PARSE_ERROR, "Parse error: the line is not valid JSON.", request_id)
    request_id = _request_id(data)
    if _has_lone_surrogate(data):
        return _error(PARSE_ERROR, "Parse error: the line holds a lone surrogate, which is not Unicode.", request_id)
    if isinstance(data, list):
        return _error(INVALID_REQUEST, "Invalid Request: batches are not supported; send one message per line.", None)
    if _contains(data, _HugeNumber):
        return _error(INVALID_REQUEST, "Invalid Request: a number in the message is too large.", request_id)
    if not isinstance(data, dict):
        return _error(INVALID_REQUEST, "Invalid Request: a message must be a JSON object.", None)
    if "params" in data and not isinstance(data["params"], dict):
        return _error(INVALID_REQUEST, "Invalid Request: params must be an object.", request_id)
    return _error(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 request, notification or response.", request_id)


class _CheckedLines:
    """Lines of stdin for the SDK's reader; a line it would drop is answered here instead."""

    def __init__(self, source: anyio.AsyncFile[bytes]) -> None:
        self._source = source
        self._lines = source.__aiter__()
        self.write_stream: Any = None
        self.ready = anyio.Event()

    def __aiter__(self) -> _CheckedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await self._lines.__anext__()  # StopAsyncIteration at EOF ends the SDK's reader
            line = raw.decode("utf-8", errors="replace")  # as the SDK decodes stdin
            if not line.strip():
                continue
            error = check_line(line)
            if error is None:
                return line
            logger.info("answered an invalid stdio line with %d: %s", error.error.code, quote(line))
            await self.ready.wait()
            await self.write_stream.send(SessionMessage(error))


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until stdin closes."""
    lines = _CheckedLines(anyio.wrap_file(sys.stdin.buffer))
    async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
        lines.write_stream = write_stream
        lines.ready.set()
        lowlevel = server._lowlevel_server
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
