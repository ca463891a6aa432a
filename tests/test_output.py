from __future__ import annotations

import os
import wave
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alicloud_tts_realtime import InvalidRequestError
from alicloud_tts_realtime.audio import decode_chunk, encode_chunk, encode_kept_chunk, wav_bytes
from alicloud_tts_realtime.output import atomic_write, confined_path, new_audio_name, prepare_target


def test_names_are_unique_and_never_embed_text() -> None:
    names = {new_audio_name() for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith("tts-") and n.endswith(".wav") for n in names)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.wav", "a/../../x.wav", "", "  "])
def test_confinement_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequestError):
        confined_path(tmp_path, name)


def test_confinement_refuses_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(InvalidRequestError, match="outside"):
        confined_path(base, "link/x.wav")


def test_confinement_accepts_plain_names(tmp_path: Path) -> None:
    assert confined_path(tmp_path, "greeting") == tmp_path.resolve() / "greeting.wav"
    assert confined_path(tmp_path, "sub/take1.wav") == tmp_path.resolve() / "sub" / "take1.wav"


@pytest.mark.anyio
async def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a" / "out.wav"

    written = await atomic_write(target, wav_bytes([b"\x01\x00" * 100], 16000))
    assert written == target.absolute()
    with wave.open(str(target)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (16000, 1, 2, 100)
    with pytest.raises(TypeError):
        await atomic_write(tmp_path / "a" / "bad.wav", "not bytes")  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out.wav"]


def test_chunk_codec_round_trip_and_odd_lengths() -> None:
    assert decode_chunk(encode_chunk(b"\x01\x02\x03\x04")) == b"\x01\x02\x03\x04"
    with pytest.raises(Exception, match="whole 16-bit samples"):
        decode_chunk(encode_chunk(b"\x01\x02\x03"))
    with pytest.raises(Exception, match="base64"):
        decode_chunk("***")


@given(st.binary(max_size=5000))
def test_the_kept_chunk_encoding_is_plain_base64(pcm: bytes) -> None:
    # Encoded piece by piece (pieces of 342 bytes, a multiple of 3): the same text as one b64encode.
    assert encode_kept_chunk(pcm) == encode_chunk(pcm)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.anyio
async def test_atomic_write_respects_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = await atomic_write(tmp_path / "shared.wav", b"RIFF")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o644  # readable by a player running as another user


def test_prepare_target_creates_nothing_and_says_why_not(tmp_path: Path) -> None:
    assert prepare_target(tmp_path / "new" / "deeper" / "x.wav") == tmp_path / "new" / "deeper" / "x.wav"
    assert list(tmp_path.iterdir()) == []  # a synthesis that fails later leaves no empty folders
    (tmp_path / "file").write_text("")
    with pytest.raises(
        Exception, match=r"Cannot write audio to .*file: it is a file, not a directory\. Set OUTPUT_DIR"
    ):
        prepare_target(tmp_path / "file" / "x.wav")
    with pytest.raises(Exception, match=r"Cannot write audio to .*file/sub: .*file is a file, not a directory\."):
        prepare_target(tmp_path / "file" / "sub" / "x.wav")


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="POSIX permissions; root writes anywhere")
def test_prepare_target_tries_the_nearest_existing_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(Exception, match=r"Cannot write audio to .*locked/a/b: Permission denied"):
            prepare_target(locked / "a" / "b" / "x.wav")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (".", "must end in a file name"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        ("x" * 252, "longer than 255 bytes"),
        ("é" * 126, "longer than 255 bytes"),
    ],
)
def test_confinement_explains_unusable_names(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        confined_path(tmp_path, name)


@pytest.mark.anyio
async def test_the_longest_valid_name_can_be_written(tmp_path: Path) -> None:
    target = confined_path(tmp_path, "x" * 251)  # 255 bytes with ".wav"
    assert (await atomic_write(target, b"RIFF")).name == "x" * 251 + ".wav"
