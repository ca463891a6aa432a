"""``python -m alicloud_tts_realtime`` runs the CLI."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
