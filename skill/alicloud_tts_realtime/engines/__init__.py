"""Engines behind the normalized interface, and the choice between them.

``realtime`` is the DashScope WebSocket client, ``offline`` the embedded eSpeak NG default,
``http`` the non-realtime HTTP API with SSE streaming, ``sdk`` the official SDK's
``QwenTtsRealtime`` (for compatibility checks and as a baseline), and ``fallback`` realtime first,
then http when realtime failed before any audio. :func:`select_engine` resolves ``auto`` (realtime
with a key, offline without) and says why. Engine modules are imported only when chosen, so a
missing optional dependency affects only the engine that needs it.
"""

from __future__ import annotations

from typing import Literal

from ..quoting import quote
from ..settings import Settings
from .base import Capabilities, Engine, StreamItem

__all__ = ["ENGINE_CHOICES", "Capabilities", "Engine", "EngineChoice", "StreamItem", "select_engine"]

EngineChoice = Literal["auto", "realtime", "offline", "fallback", "http", "sdk"]
ENGINE_CHOICES: tuple[str, ...] = ("auto", "realtime", "offline", "fallback", "http", "sdk")


def select_engine(settings: Settings, choice: str = "auto") -> tuple[Engine, str]:
    """Build the engine for ``choice`` and return it with a one-line reason for the choice.

    Raises:
        ConfigurationError: A remote engine (``realtime``, ``fallback``, ``http``, ``sdk``) was
            asked for without a key.
        EngineUnavailableError: ``offline`` (or ``sdk``) was asked for, or ``offline`` chosen,
            without its dependency installed.
        InvalidRequestError: ``choice`` is not an engine name.
    """
    from ..errors import InvalidRequestError

    if choice not in ENGINE_CHOICES:
        raise InvalidRequestError(
            f"Unknown engine {quote(choice)}; use one of: {', '.join(ENGINE_CHOICES)}.", field="engine"
        )
    if choice == "auto":
        if settings.has_key:
            choice, reason = "realtime", f"auto: realtime, because an API key is configured ({settings.key_source})"
        else:
            choice, reason = "offline", "auto: offline (eSpeak NG), because no DashScope API key is configured"
            if settings.key_note:
                reason += f" ({settings.key_note})"
    else:
        reason = f"{choice}: requested"
    if choice in ("realtime", "fallback", "http", "sdk"):
        settings.bearer()  # fail now, before anything else, when no key is configured
    if choice == "realtime":
        from .realtime import RealtimeEngine

        return RealtimeEngine(settings), reason
    if choice == "http":
        from .http_sse import HttpEngine

        return HttpEngine(settings), reason
    if choice == "fallback":
        from .fallback import FallbackEngine
        from .http_sse import HttpEngine
        from .realtime import RealtimeEngine

        return FallbackEngine([RealtimeEngine(settings), HttpEngine(settings)]), (
            f"{reason} (realtime, then the HTTP API if realtime fails before any audio)"
        )
    if choice == "sdk":
        from .sdk import SdkEngine, require_sdk

        require_sdk()  # fail now with an install hint when the SDK is missing
        return SdkEngine(settings), reason
    from .offline import OfflineEngine

    return OfflineEngine(), reason
