"""The one error hierarchy of the package.

Every failure the package reports is a :class:`TTSError`. Local errors mean the caller's input or
configuration is wrong and are raised before any paid call; remote errors mean the service refused,
failed, or broke the protocol. ``retryable`` tells the retry loop in :mod:`.service` whether a fresh
attempt may succeed; it never retries once audio has reached the caller.

.. code-block:: text

    TTSError (retryable=False)
    ├── LocalError                      bad input or configuration; nothing was sent
    │   ├── InvalidRequestError         (also ValueError) text, voice, model, sample rate …
    │   │   └── InvalidInputError       a batch input file with problems, each with its line number
    │   ├── ConfigurationError          missing key, malformed credentials file, bad URL
    │   ├── EngineUnavailableError      an optional engine's dependency is not installed
    │   └── InvalidStateError           an object used in the wrong state ("session is finished")
    └── RemoteError                     the service (or the network to it) failed
        ├── AuthenticationError         handshake refused with 401/403
        ├── RateLimitError              HTTP 429 or close 1011 "To many requests" (retryable)
        ├── ServiceError                an ``error`` event / error body; retryable for server errors
        ├── ConnectionFailedError       (also ConnectionError) network failure, drop (retryable)
        ├── NoAudioError                the session ended without audio (e.g. unknown model)
        ├── ProtocolViolationError      the service broke the event order or sent garbage
        └── ResponseTimeoutError        (also TimeoutError) silence past the deadline (retryable)

Messages are composed in ``__str__`` from structured fields and never contain the API key: code
that wraps third-party exceptions whose text may carry request headers raises ``from None``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectionFailedError",
    "EngineUnavailableError",
    "InvalidInputError",
    "InvalidRequestError",
    "InvalidStateError",
    "LocalError",
    "NoAudioError",
    "OutputError",
    "ProtocolViolationError",
    "RateLimitError",
    "RemoteError",
    "ResponseTimeoutError",
    "ServiceError",
    "TTSError",
    "classify_close",
    "classify_status",
    "close_error",
]


class TTSError(Exception):
    """Root of every error raised by this package.

    Attributes:
        message: One sentence saying what went wrong and, where possible, what to do.
        retryable: Whether a fresh attempt (a new session) may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class LocalError(TTSError):
    """The caller's input or configuration is wrong; nothing was sent to the service."""


class InvalidRequestError(LocalError, ValueError):
    """A request field is invalid (blank text, unknown voice, wrong model for an instruction …).

    Attributes:
        field: The request field at fault, e.g. ``"voice"``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidInputError(InvalidRequestError):
    """A batch input file has problems; nothing was sent.

    Attributes:
        problems: The first problems found, each a sentence starting with its line number.
        count: How many problems there are in all (``len(problems)`` or more).
    """

    def __init__(self, message: str, *, problems: tuple[str, ...], count: int) -> None:
        super().__init__(message, field="input")
        self.problems = problems
        self.count = count


class ConfigurationError(LocalError):
    """Settings or credentials are missing or malformed."""


class EngineUnavailableError(LocalError):
    """An engine's optional dependency is not installed; the message says how to install it."""


class InvalidStateError(LocalError):
    """An object was used in a state that does not allow the call, e.g. after it was closed."""


class OutputError(TTSError):
    """The audio was synthesized (and billed) but could not be saved, e.g. the disk filled up.

    Not a :class:`LocalError`: the service was called. The output path itself is checked before
    the call (:func:`~.output.prepare_target`), so this is rare.
    """


class RemoteError(TTSError):
    """The service, or the network to it, failed or refused.

    Attributes:
        status: HTTP status of a refused handshake or request, when known.
        code: Service error code (``InvalidApiKey``, ``invalid_value`` …), when known.
        request_id: Service request id, useful in support tickets.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (("status", self.status), ("code", self.code), ("request_id", self.request_id))
            if value is not None
        ]
        if not details:
            return self.message
        # One sentence: the details go inside it, before the full stop.
        body, stop = (self.message[:-1], ".") if self.message.endswith(".") else (self.message, "")
        return f"{body} ({', '.join(details)}){stop}"


class AuthenticationError(RemoteError):
    """The service refused the credentials (HTTP 401/403 at the handshake or request)."""


class RateLimitError(RemoteError):
    """The service throttled the request; retry after a pause."""

    retryable = True


class ServiceError(RemoteError):
    """The service answered with an ``error`` event or an error body.

    Attributes:
        error_type: ``invalid_request_error`` (final) or ``server_error`` (retryable), when known.
        param: The offending parameter, e.g. ``session.voice``.
        event_id: The ``event_id`` of the client event the error refers to.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        if retryable is None:
            # Protocol doc §3.8: server errors end the session but are transient; client errors are final.
            retryable = error_type == "server_error" or (status is not None and classify_status(status)[1])
        super().__init__(message, status=status, code=code, request_id=request_id, retryable=retryable)
        self.error_type = error_type
        self.param = param
        self.event_id = event_id

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} [param {self.param}]" if self.param else base


class ConnectionFailedError(RemoteError, ConnectionError):
    """The connection could not be opened or dropped unexpectedly."""

    retryable = True


class NoAudioError(RemoteError):
    """The session ended without producing audio (the real service does this for an unknown model)."""


class ProtocolViolationError(RemoteError):
    """The service sent something the protocol does not allow at this point."""


class ResponseTimeoutError(RemoteError, TimeoutError):
    """Nothing arrived from the service within the allowed time."""

    retryable = True


# --- the one table from an HTTP status or a close code to an error class ---------------------------
#
# Every engine asks these two functions which class an HTTP refusal (the WebSocket upgrade, the HTTP
# API) or a WebSocket close is, and whether a fresh attempt may help; only the wording of the message
# is each engine's own.

THROTTLE_CLOSE_CODE = 1011  # §3.8: "To many requests. Your requests are being throttled..."
ABNORMAL_CLOSE_CODE = 1006  # no close frame: the TCP connection dropped


def classify_status(status: int, code: str | None = None) -> tuple[type[RemoteError], bool]:
    """The error class and ``retryable`` for an HTTP status (and the DashScope body ``code``).

    401/403 or ``InvalidApiKey``: the key (final). 429 or ``Throttling*``: throttled (retry after a
    pause). 408 and 5xx: transient service errors. Any other status: a final refusal.
    """
    if status in (401, 403) or code == "InvalidApiKey":
        return AuthenticationError, False
    if status == 429 or (code or "").startswith("Throttling"):
        return RateLimitError, True
    return ServiceError, status == 408 or status >= 500


def classify_close(code: int | None, reason: str, got_audio: bool) -> tuple[type[RemoteError], bool, str]:
    """The error class, ``retryable`` and a sentence for a connection closed before ``session.finished``.

    Args:
        code: The close code received; ``None`` (the SDK's word for it) or 1006 when the TCP
            connection dropped without a close frame.
        reason: The close reason, possibly empty.
        got_audio: Whether audio already reached the caller (a retry would then speak twice).
    """
    said = f": {reason}" if reason else ""
    if code is None or code == ABNORMAL_CLOSE_CODE:
        if got_audio:
            return ConnectionFailedError, True, "The connection dropped mid-stream without a close frame (close 1006)."
        return (
            ConnectionFailedError,
            True,
            "The connection to the service dropped before any audio, without a close frame (close 1006); "
            "a new attempt may succeed.",
        )
    if code == THROTTLE_CLOSE_CODE and "many requests" in reason.lower():
        return RateLimitError, True, f"The service is throttling requests (close {code}{said}); wait and retry."
    if got_audio:
        return ConnectionFailedError, True, f"The connection dropped mid-stream (close {code}{said})."
    if code == 1000:
        # A clean close before any audio is how the service answers an unknown model (§3.5 gotcha 1).
        return (
            NoAudioError,
            False,
            f"The service closed the session before any audio (close {code}{said}). "
            "This is how it answers an unknown or unavailable model: check the model name and region.",
        )
    # 1001 going away, 1011 internal error, 1012 restart, 1013 try again later: transient.
    return (
        ServiceError,
        code in (1001, 1011, 1012, 1013, 1014),
        f"The service closed the connection (close {code}{said}).",
    )


def close_error(code: int | None, reason: str, got_audio: bool) -> RemoteError:
    """The error for a connection the service closed before ``session.finished`` (every WebSocket engine)."""
    cls, retryable, message = classify_close(code, reason, got_audio)
    return cls(message, retryable=retryable)
