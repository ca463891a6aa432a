"""Engines behind the normalized interface, and the choice between them.

``realtime`` is the DashScope WebSocket client, ``offline`` the embedded eSpeak NG default.
:func:`select_engine` resolves ``auto`` (realtime with a key, offline without) and says why.
Engine modules are imported only when chosen, so a missing optional dependency affects only the
engine that needs it.
"""

from __future__ import annotations

from typing import Literal

from ..settings import Settings
from .base import Capabilities, Engine, StreamItem

__all__ = ["ENGINE_CHOICES", "Capabilities", "Engine", "EngineChoice", "StreamItem", "select_engine"]

EngineChoice = Literal["auto", "realtime", "offline"]
ENGINE_CHOICES: tuple[str, ...] = ("auto", "realtime", "offline")


def select_engine(settings: Settings, choice: str = "auto") -> tuple[Engine, str]:
    """Build the engine for ``choice`` and return it with a one-line reason for the choice.

    Raises:
        ConfigurationError: ``realtime`` was asked for without a key.
        EngineUnavailableError: ``offline`` was asked for (or chosen) without its extra installed.
        InvalidRequestError: ``choice`` is not an engine name.
    """
    from ..errors import InvalidRequestError

    if choice not in ENGINE_CHOICES:
        raise InvalidRequestError(
            f"Unknown engine {choice!r}; use one of: {', '.join(ENGINE_CHOICES)}.", field="engine"
        )
    if choice == "auto":
        if settings.has_key:
            choice, reason = "realtime", f"auto: realtime, because an API key is configured ({settings.key_source})"
        else:
            choice, reason = "offline", "auto: offline (eSpeak NG), because no DashScope API key is configured"
    else:
        reason = f"{choice}: requested"
    if choice == "realtime":
        from .realtime import RealtimeEngine

        settings.bearer()  # fail now, before anything else, when no key is configured
        return RealtimeEngine(settings), reason
    from .offline import OfflineEngine

    return OfflineEngine(), reason
