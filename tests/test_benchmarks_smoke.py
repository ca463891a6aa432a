"""The benchmark scripts keep working: each runs once as a subprocess, with its smallest settings.

No timing or memory assertions: figures belong in ``benchmarks/README.md``, not in tests (house
rule: "Measure what you claim"). The scripts run in parallel, which keeps this module to about
thirty seconds; they only print, so they do not disturb one another beyond their timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# script → (smallest arguments, text its output must contain)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "first_audio.py": (
        ["--runs", "2", "--quick"],
        ["### no pacing", "### paced", "### wrong key", "| engine", "first p50", "total p90", "total/sdk", "| sdk "],
    ),
    "offline_rtf.py": (
        ["--runs", "1", "--quick"],
        ["| text", "first chunk", "offline RTF", "signal RTF", "offline/signal", "| zh short", "by sample rate"],
    ),
    "pool.py": (
        ["--quick"],
        ["### warm vs cold TTFA", "| warm (pooled)", "sequential utterances", "concurrent syntheses", "idle pooled"],
    ),
    "playback_latency.py": (
        ["--runs", "1", "--quick"],
        ["### first PCM byte", "| mcp tools/call", "| cli speak --play", "gap p90"],
    ),
    "batch.py": (
        ["--quick", "--runs", "1"],
        [
            "### throughput, unpaced",
            "### throughput, paced",
            "batch / concurrency bound",
            "### memory of the batch",
            "| validate only, lines",
            "### rpm pacing",
            "most starts in 1 s",
        ],
    ),
    "long_text.py": (
        ["--quick"],
        ["### no pacing", "### paced", "| one sentence", "5,000 characters", "p50/sentence"],
    ),
    "memory.py": (
        ["--runs", "1", "--quick"],
        [
            "### output mode",
            "traced peak MiB",
            "RSS growth MiB",
            "| output=both",
            "| output=chunks, realtime",
            "| sdk x3",
            "each extra session",
        ],
    ),
}
_ENV_DROPPED = ("DASHSCOPE_", "ALIBABA_CLOUD_", "ALICLOUD_", "OUTPUT_DIR", "TTS_MCP_")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[int, str, str]], Path]:
    """Run every script at once in an empty working directory; their (exit code, stdout, stderr)."""
    workdir = tmp_path_factory.mktemp("cwd")
    env = {name: value for name, value in os.environ.items() if not name.startswith(_ENV_DROPPED)}
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / script), *args],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script, (args, _) in CASES.items()
    }
    results = {}
    try:
        for script, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            results[script] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results, workdir


@pytest.mark.parametrize("script", list(CASES))
def test_runs_and_prints_its_tables(script: str, finished: tuple[dict[str, tuple[int, str, str]], Path]) -> None:
    code, out, err = finished[0][script]
    assert code == 0, err
    assert "Traceback" not in err
    for expected in CASES[script][1]:
        assert expected in out, f"{script}: {expected!r} missing from its output:\n{out}"


def test_leaves_no_files_behind(finished: tuple[dict[str, tuple[int, str, str]], Path]) -> None:
    assert list(finished[1].iterdir()) == []
