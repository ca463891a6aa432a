"""Distribution: uv's cache keys, the Claude Code plugin, the .mcpb bundle and the MCP Registry entry."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "skill" / "alicloud_tts_realtime"


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- uv -------------------------------------------------------------------------------------------


def test_every_packaged_file_is_a_uv_cache_key() -> None:
    # `uvx --from <folder>` rebuilds only when a cache key changes: a package file outside every key
    # would be served stale after an edit.
    uv = pyproject()["tool"]["uv"]  # type: ignore[index]
    patterns = [key["file"] for key in uv["cache-keys"]]
    assert "pyproject.toml" in patterns
    files = [
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc")
    ]
    assert files
    for path in files:
        relative = path.relative_to(ROOT)
        assert any(_match(relative, p) for p in patterns), f"{relative} is packaged but no uv cache key covers it"


def _match(path: Path, pattern: str) -> bool:
    """Glob match with ``**`` as uv reads cache keys (``PurePath.full_match`` needs Python 3.13)."""
    import fnmatch

    parts, globs = path.as_posix().split("/"), pattern.split("/")

    def walk(i: int, j: int) -> bool:
        if j == len(globs):
            return i == len(parts)
        if globs[j] == "**":
            return any(walk(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], globs[j]) and walk(i + 1, j + 1)

    return walk(0, 0)
