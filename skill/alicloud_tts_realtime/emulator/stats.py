"""Counters of one emulator, for tests that watch it (also in another process, over HTTP).

The sans-I/O core counts commits; the I/O layer counts connections. Served as JSON at
:data:`STATS_PATH` and as :attr:`Emulator.stats <alicloud_tts_realtime.emulator.Emulator.stats>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["STATS_PATH", "EmulatorStats"]

STATS_PATH = "/_emulator/stats"


@dataclass
class EmulatorStats:
    """What an emulator has counted since it started.

    Attributes:
        upgrade_requests: WebSocket upgrade requests on the realtime path, refused ones included
            (the ordinal of the latest connection, as :class:`~.config.Fault` counts them).
        connections_total: Upgrades accepted (WebSocket connections opened).
        refused_upgrades: Upgrades answered with an HTTP error (bad key, ``reject_status``,
            ``max_connections``).
        open_sessions: WebSocket connections open now.
        peak_open_sessions: The most WebSocket connections open at once.
        commits: ``input_text_buffer.commit`` events accepted (answered with ``committed``).
        rejected_commits: Commits answered with an error (empty, too long, while responding).
        max_commit_chars_seen: The longest text a commit carried, in code points, rejected ones
            included (0 before any commit with text).
        responses: Responses started.
    """

    upgrade_requests: int = 0
    connections_total: int = 0
    refused_upgrades: int = 0
    open_sessions: int = 0
    peak_open_sessions: int = 0
    commits: int = 0
    rejected_commits: int = 0
    max_commit_chars_seen: int = 0
    responses: int = 0

    def opened(self) -> None:
        self.connections_total += 1
        self.open_sessions += 1
        self.peak_open_sessions = max(self.peak_open_sessions, self.open_sessions)

    def closed(self) -> None:
        self.open_sessions -= 1

    def commit_seen(self, chars: int, *, accepted: bool) -> None:
        self.max_commit_chars_seen = max(self.max_commit_chars_seen, chars)
        if accepted:
            self.commits += 1
        else:
            self.rejected_commits += 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
