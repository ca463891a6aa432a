"""What the benchmark scripts share: percentiles and Markdown tables (so figures paste into the README)."""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from importlib.metadata import version

__all__ = ["ms", "percentile", "print_table", "ratio", "versions"]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, ``p`` in 0–100: always one of the measured values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` to two decimals, or a dash when the baseline is not positive."""
    return f"{value / baseline:.2f}" if baseline > 0 else "–"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a titled Markdown table, the first column left-aligned and the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    print(f"\n### {title}\n")
    print("\n".join([line(header), line(rule), *(line(row) for row in rows)]))


def versions() -> str:
    """One line naming the software measured."""
    packages = ("alicloud-ai-audio-tts-realtime", "websockets", "dashscope", "websocket-client", "httpx")
    found = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {platform.python_version()}, {found}"
