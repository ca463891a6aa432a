"""Output formats: each decodes back (soundfile) to the WAV's duration and loudness, for every engine."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from pydantic import SecretStr

from alicloud_tts_realtime import ConfigurationError, InvalidRequestError, Settings, build_request
from alicloud_tts_realtime.cli import main
from alicloud_tts_realtime.emulator import Emulator
from alicloud_tts_realtime.engines.base import Engine
from alicloud_tts_realtime.formats import FORMAT_NAMES, FORMATS, check_format, resolve_format
from alicloud_tts_realtime.service import synthesize
from alicloud_tts_realtime.sinks import WavFileSink

pytestmark = pytest.mark.anyio
ENCODED = ["mp3", "ogg", "flac", "pcm"]


def decode(path: Path, rate: int) -> np.ndarray:
    if path.suffix == ".pcm":
        return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float64)
    data, got = soundfile.read(path, dtype="int16")
    assert got == rate
    return data.astype(np.float64)


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64), wav.getframerate()


def rms_db(samples: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(samples**2))) + 1e-9)


async def assert_formats_match_the_wav(engine: Engine, tmp_path: Path, formats: list[str], **fields: object) -> None:
    """Synthesize once per format, with a WAV of the very same audio written beside it by a second sink."""
    request = build_request(**({"text": "Formats people can send.", "voice": "Cherry"} | fields))
    for name in formats:
        reference = WavFileSink(tmp_path / f"{name}-reference.wav", request.sample_rate)
        response = await synthesize(request, engine, output="file", audio_dir=tmp_path, format=name, sinks=[reference])
        path = Path(response.file_path or "")
        assert path.suffix == FORMATS[name].extension and response.file_format == name
        wav, rate = wav_samples(reference.path)
        decoded = decode(path, rate)
        assert abs(len(decoded) - len(wav)) / rate * 1000 <= 50, name  # duration within 50 ms
        assert abs(rms_db(decoded) - rms_db(wav)) <= 1.0, name  # loudness within 1 dB
        if name in ("flac", "pcm"):  # lossless: the very samples
            assert np.array_equal(decoded, wav), name


async def test_offline_engine_gives_every_format(tmp_path: Path) -> None:
    from alicloud_tts_realtime.engines.offline import OfflineEngine

    async with OfflineEngine() as engine:
        await assert_formats_match_the_wav(engine, tmp_path, ENCODED, sample_rate=16000)


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
async def test_realtime_engine_gives_every_format(tmp_path: Path, emulator: Emulator, rate: int) -> None:
    from alicloud_tts_realtime.engines.realtime import RealtimeEngine

    settings = Settings(api_key=SecretStr(emulator.config.api_key), realtime_url=emulator.url)
    await assert_formats_match_the_wav(RealtimeEngine(settings), tmp_path, ENCODED, sample_rate=rate)


async def test_http_engine_goes_through_the_same_sinks(tmp_path: Path, emulator: Emulator) -> None:
    from alicloud_tts_realtime.engines.http_sse import HttpEngine

    settings = Settings(api_key=SecretStr(emulator.config.api_key), http_base_url=emulator.http_base_url)
    async with HttpEngine(settings) as engine:
        await assert_formats_match_the_wav(engine, tmp_path, ["ogg"])


async def test_sdk_engine_goes_through_the_same_sinks(tmp_path: Path, emulator: Emulator) -> None:
    from alicloud_tts_realtime.engines.sdk import SdkEngine

    settings = Settings(api_key=SecretStr(emulator.config.api_key), realtime_url=emulator.url, connect_timeout=5)
    async with SdkEngine(settings) as engine:
        await assert_formats_match_the_wav(engine, tmp_path, ["mp3"])


@pytest.mark.parametrize("name", ["mp3", "ogg"])
def test_speak_format_decodes_to_the_wavs_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    text = "The same words in two formats."
    assert main(["speak", text, "--output", str(tmp_path / "a.wav"), "--json"]) == 0
    wav = json.loads(capsys.readouterr().out)
    assert main(["speak", text, "--format", name, "--output", str(tmp_path / f"b.{name}"), "--json"]) == 0
    encoded = json.loads(capsys.readouterr().out)
    assert encoded["file_format"] == name and encoded["file_path"].endswith(f".{name}")
    info = soundfile.info(encoded["file_path"])
    assert abs(info.frames / info.samplerate * 1000 - wav["duration_ms"]) <= 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", f"b.{name}"]


def test_the_format_follows_the_name_unless_they_disagree() -> None:
    assert resolve_format(None).name == "wav" and resolve_format(None, "x.MP3").name == "mp3"
    assert resolve_format("ogg", "speech").name == "ogg" and resolve_format("FLAC", "x.flac").name == "flac"
    with pytest.raises(InvalidRequestError, match=r"ends in \.mp3 but the format is 'ogg'"):
        resolve_format("ogg", "speech.mp3")
    with pytest.raises(InvalidRequestError, match="Unknown format 'aac'; use one of: wav, mp3, ogg, flac, pcm"):
        resolve_format("aac")
    assert set(FORMAT_NAMES) == {"wav", "mp3", "ogg", "flac", "pcm"}
    assert {f.mime_type for f in FORMATS.values()} >= {"audio/wav", "audio/mpeg", "audio/ogg", "audio/flac"}


def test_a_missing_encoder_is_named_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FORMAT_NAMES:
        check_format(FORMATS[name], 24000)  # this machine's soundfile writes them all
    monkeypatch.setattr(soundfile, "available_subtypes", lambda container=None: {})
    with pytest.raises(ConfigurationError, match=r"cannot write MP3; .*pip install -U soundfile.*format 'wav'"):
        check_format(FORMATS["mp3"], 24000)
    with pytest.raises(InvalidRequestError, match="takes sample rates"):
        check_format(FORMATS["ogg"], 22050)


async def test_format_needs_saved_audio(tmp_path: Path, emulator: Emulator) -> None:
    from alicloud_tts_realtime.engines.realtime import RealtimeEngine

    settings = Settings(api_key=SecretStr(emulator.config.api_key), realtime_url=emulator.url)
    request = build_request(text="Hi.", voice="Cherry")
    with pytest.raises(InvalidRequestError, match="format applies only to saved audio"):
        await synthesize(request, RealtimeEngine(settings), output="chunks", format="mp3")
    with pytest.raises(InvalidRequestError, match=r"ends in \.wav"):
        await synthesize(request, RealtimeEngine(settings), output="file", path=tmp_path / "x.wav", format="ogg")
    assert emulator.sessions == [] and list(tmp_path.iterdir()) == []
