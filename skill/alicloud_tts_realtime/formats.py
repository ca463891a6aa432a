"""The audio file formats the package writes, in one registry: names, extensions, MIME types, encoders.

``wav`` (the default) and ``pcm`` (raw s16le, no header) are written by the package itself.
``mp3``, ``ogg`` (Opus in Ogg) and ``flac`` are encoded locally, as the audio arrives, by
`soundfile <https://python-soundfile.readthedocs.io>`_, whose wheels bundle libsndfile with its
MP3 (LAME, mpg123) and Opus support. The service always sends PCM; encoding happens here.

Support is checked at run time (:func:`check_format`): a libsndfile built without MP3 or Opus (a
system library older than 1.1.0, say) is named with the fix, before any paid call.

Opus in Ogg takes 8, 12, 16, 24 or 48 kHz; every sample rate the package produces (8000, 16000,
24000, 48000) is one of them, so nothing is resampled. Other callers (the batch command) pick a
format with :func:`resolve_format` and open its sink with :func:`~.sinks.open_file_sink`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from .errors import ConfigurationError, InvalidRequestError

__all__ = ["DEFAULT_FORMAT", "FORMATS", "FORMAT_NAMES", "AudioFormat", "check_format", "resolve_format"]


@dataclass(frozen=True)
class AudioFormat:
    """One output format.

    Attributes:
        name: What callers pass as ``format``: ``wav``, ``mp3``, ``ogg``, ``flac`` or ``pcm``.
        extension: The file name ending, with its dot.
        mime_type: For the MCP ``resource_link`` and HTTP clients.
        description: A few words for help texts and results.
        soundfile: libsndfile's (format, subtype) for encoded formats; ``None`` when the package
            writes the bytes itself.
        sample_rates: The rates the encoder takes; ``None`` for any.
    """

    name: str
    extension: str
    mime_type: str
    description: str
    soundfile: tuple[str, str] | None = None
    sample_rates: tuple[int, ...] | None = None


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("wav", ".wav", "audio/wav", "WAV, PCM16 mono"),
        AudioFormat("mp3", ".mp3", "audio/mpeg", "MP3", ("MP3", "MPEG_LAYER_III"), (8000, 16000, 24000, 48000)),
        AudioFormat("ogg", ".ogg", "audio/ogg", "Ogg Opus", ("OGG", "OPUS"), (8000, 12000, 16000, 24000, 48000)),
        AudioFormat("flac", ".flac", "audio/flac", "FLAC, 16-bit mono", ("FLAC", "PCM_16")),
        # audio/L16 would say big-endian (RFC 2586); these are little-endian samples without a header.
        AudioFormat("pcm", ".pcm", "application/octet-stream", "raw PCM s16le mono, no header"),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
DEFAULT_FORMAT = FORMATS["wav"]
_BY_EXTENSION = {f.extension: f for f in FORMATS.values()}


def resolve_format(name: str | None, filename: str | PurePath | None = None) -> AudioFormat:
    """The format for ``name``, or else the one ``filename``'s extension names, or else WAV.

    Raises:
        InvalidRequestError: ``name`` is not a known format, or ``filename`` ends in another
            format's extension (``speech.mp3`` with ``format='ogg'``).
    """
    by_name: AudioFormat | None = None
    if name is not None:
        by_name = FORMATS.get(name.strip().lower())
        if by_name is None:
            shown = name if len(name) <= 20 else name[:20] + "…"
            raise InvalidRequestError(
                f"Unknown format {shown!r}; use one of: {', '.join(FORMAT_NAMES)}.", field="format"
            )
    by_extension = _BY_EXTENSION.get(PurePath(filename).suffix.lower()) if filename else None
    if by_name is not None and by_extension is not None and by_extension is not by_name:
        raise InvalidRequestError(
            f"The file name ends in {by_extension.extension} but the format is {by_name.name!r}; "
            f"change the extension to {by_name.extension}, or drop it, or drop the format.",
            field="format",
        )
    return by_name or by_extension or DEFAULT_FORMAT


def check_format(audio_format: AudioFormat, sample_rate: int) -> None:
    """Check, before any paid call, that ``audio_format`` can be written at ``sample_rate`` here.

    Raises:
        InvalidRequestError: The encoder does not take ``sample_rate``.
        ConfigurationError: ``soundfile`` is missing, or its libsndfile cannot write the format.
    """
    if audio_format.sample_rates is not None and sample_rate not in audio_format.sample_rates:
        rates = ", ".join(map(str, audio_format.sample_rates))
        raise InvalidRequestError(
            f"The {audio_format.name} format takes sample rates {rates}, not {sample_rate}.", field="sample_rate"
        )
    if audio_format.soundfile is None:
        return
    container, subtype = audio_format.soundfile
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the wheel's libsndfile could not be loaded
        raise ConfigurationError(
            f"The {audio_format.name} format needs the soundfile package ({type(exc).__name__}); "
            "install it with: pip install 'soundfile>=0.12.1', or use format 'wav'."
        ) from None
    if subtype not in soundfile.available_subtypes(container):
        raise ConfigurationError(
            f"This soundfile's libsndfile ({soundfile.__libsndfile_version__}) cannot write {audio_format.description}; "
            "install a soundfile wheel that bundles libsndfile 1.1 or later (pip install -U soundfile), "
            "or use format 'wav'."
        )
