#!/usr/bin/env python3
"""Probe Qwen TTS realtime synthesis in this runtime; optionally fall back to the HTTP API.

Usage: ``python scripts/realtime_tts_demo.py --text "realtime health check" [--fallback] [--strict]``.
Prints one line of JSON; see ``--help`` for the options and exit codes, and
``alicloud_tts_realtime.probe`` for the details. Also available as ``alicloud-tts-realtime probe``.

Works from a checkout or a copy of the skill folder: when the package is not installed, it is
imported from the ``skill/`` folder next to this script's folder.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

if importlib.util.find_spec("alicloud_tts_realtime") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

try:
    from alicloud_tts_realtime import probe
except ModuleNotFoundError as exc:  # a dependency of the package (pydantic, websockets …) is missing
    import shlex

    folder = Path(__file__).absolute().parent.parent
    hint = (
        f"missing Python package {exc.name!r}; install the skill folder with its dependencies: pip install -e "
        f"{shlex.quote(f'{folder}[offline]')} (or run it without installing: uvx --from "
        f"{shlex.quote(str(folder))} alicloud-tts-realtime …)"
    )  # the same words as alicloud_tts_realtime.probe.missing_dependency, which could not be imported
    error = {"type": "EngineUnavailableError", "message": hint}
    print(json.dumps({"realtime_probe": {"ok": False, "stage": None, "error": error}}))
    print(f"error: {hint}", file=sys.stderr)
    sys.exit(1)

if __name__ == "__main__":
    sys.exit(probe.main())
