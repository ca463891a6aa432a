"""Against the real DashScope service: skipped unless DASHSCOPE_API_KEY is set and TTS_LIVE=1.

These cost a few billed characters each. They check what the emulator cannot: that the real
service still speaks the protocol our client and our emulator agree on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alicloud_tts_realtime import build_request, load_settings
from alicloud_tts_realtime.audio import decode_chunk
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import synthesize

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("DASHSCOPE_API_KEY") and os.environ.get("TTS_LIVE") == "1"),
        reason="live tests need DASHSCOPE_API_KEY and TTS_LIVE=1",
    ),
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "instruction"),
    [("qwen3-tts-flash-realtime", None), ("qwen3-tts-instruct-flash-realtime", "calm and warm")],
)
async def test_real_service_speaks(model: str, instruction: str | None) -> None:
    from speech_features import assert_speech_like

    settings = load_settings()
    request = build_request(text="你好，这是一次实时测试。", voice="Cherry", model=model, instruction=instruction)
    response = await synthesize(request, RealtimeEngine(settings))
    pcm = b"".join(decode_chunk(c) for c in response.audio_base64_pcm_chunks)
    assert response.finish_reason == "stop" and response.characters == 2 * 10 + 2  # 10 ideographs, "，" and "。"
    assert_speech_like(pcm, response.sample_rate)


def test_real_probe_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "realtime_tts_demo.py"), "--text", "realtime health check", "--strict"],
        env={**os.environ, "OUTPUT_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["realtime_probe"]["stage"] == "session.finished"
