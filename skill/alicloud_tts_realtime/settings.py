"""Settings: credentials, region, endpoints and the output directory, read on demand.

Nothing is read at import time. :func:`load_settings` takes the environment and home directory as
arguments (defaulting to the real ones) so tests can pass their own. The API key is a
:class:`pydantic.SecretStr`: its ``repr`` and ``str`` are masked, and only :meth:`Settings.bearer`
reveals it, for the one header that needs it.
"""

from __future__ import annotations

import configparser
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from .errors import ConfigurationError
from .quoting import quote

_N = TypeVar("_N", int, float)

__all__ = ["REGIONS", "Settings", "load_settings"]

# Region → (realtime WebSocket base, HTTP API base), protocol doc §2.1 and §6.1.
REGIONS: dict[str, tuple[str, str]] = {
    "cn-beijing": ("wss://dashscope.aliyuncs.com", "https://dashscope.aliyuncs.com/api/v1"),
    "ap-southeast-1": ("wss://dashscope-intl.aliyuncs.com", "https://dashscope-intl.aliyuncs.com/api/v1"),
}
REALTIME_PATH = "/api-ws/v1/realtime"
AUDIO_SUBDIR = Path("ai-audio-tts-realtime") / "audio"


@dataclass(frozen=True)
class Settings:
    """Everything the engines and entry points need to know about the environment.

    Attributes:
        api_key: The DashScope API key, or None when none is configured (offline only).
        key_source: Where the key came from (``env`` or the credentials file path), never the key.
        region: ``cn-beijing`` or ``ap-southeast-1``.
        workspace: Optional workspace id, sent as ``X-DashScope-WorkSpace``.
        realtime_url: The realtime endpoint without the ``?model=`` query.
        http_base_url: The HTTP API base, ending in ``/api/v1``.
        output_dir: Base output directory (``OUTPUT_DIR``); audio goes to :attr:`audio_dir`.
        connect_timeout: Seconds allowed for the handshake and ``session.created``.
        idle_timeout: Seconds of silence from the service allowed while synthesizing.
        key_note: Why no key was found when that is likely a mistake, e.g. a credentials profile
            with AccessKey credentials but no ``dashscope_api_key``; said wherever "no key" is.
        max_connections: Realtime connections open at once (``DASHSCOPE_MAX_CONNECTIONS``); personal
            accounts get 3, counted over every key and workspace of the root account.
        pool_idle_s: Seconds an idle pooled socket is kept (``DASHSCOPE_POOL_IDLE_S``).
        pool_max_age_s: Seconds after which a socket is no longer handed out.
        ws_deflate: Offer permessage-deflate (``DASHSCOPE_WS_DEFLATE=1``); off by default, as it
            costs client CPU and latency on base64 audio that hardly compresses.
        max_segment_chars: Longest text segment committed at once (``DASHSCOPE_MAX_SEGMENT_CHARS``);
            see :mod:`.segment`.
    """

    api_key: SecretStr | None = None
    key_source: str | None = None
    region: str = "cn-beijing"
    workspace: str | None = None
    realtime_url: str = REGIONS["cn-beijing"][0] + REALTIME_PATH
    http_base_url: str = REGIONS["cn-beijing"][1]
    output_dir: Path = field(default_factory=lambda: Path("output"))
    connect_timeout: float = 10.0
    idle_timeout: float = 20.0
    key_note: str | None = None
    max_connections: int = 3
    pool_idle_s: float = 60.0
    pool_max_age_s: float = 900.0
    ws_deflate: bool = False
    max_segment_chars: int = 300

    @property
    def audio_dir(self) -> Path:
        """Directory where synthesized audio files are written."""
        return self.output_dir / AUDIO_SUBDIR

    @property
    def has_key(self) -> bool:
        return self.api_key is not None

    def __post_init__(self) -> None:
        if self.api_key is not None:
            _check_header_value("The API key", self.api_key.get_secret_value())
        if self.workspace is not None:
            _check_header_value("The workspace", self.workspace)

    def bearer(self) -> str:
        """The ``Authorization`` header value. Never log or store the result.

        Raises:
            ConfigurationError: No key is configured.
        """
        if self.api_key is None:
            note = f" ({self.key_note})" if self.key_note else ""
            raise ConfigurationError(
                "No DashScope API key: set DASHSCOPE_API_KEY, or dashscope_api_key in "
                f"~/.alibabacloud/credentials (or use the offline engine){note}."
            )
        return "Bearer " + self.api_key.get_secret_value()


KEY_OPTIONS = ("dashscope_api_key", "DASHSCOPE_API_KEY")
"""Option names holding the DashScope key in a credentials section, in order of precedence."""
ACCESS_KEY_OPTIONS = frozenset({"access_key_id", "accesskeyid", "access_key_secret", "accesskeysecret"})
"""Option names (lower case) of an Alibaba Cloud AccessKey pair, which DashScope does not take."""


def _read_credentials(path: Path) -> configparser.ConfigParser | None:
    """Parse the credentials file, or return None when there is none.

    The file is the Alibaba Cloud credentials INI, shared with AccessKey profiles, so it is read
    leniently: a UTF-8 BOM is skipped, a repeated section is merged and a repeated option keeps its
    last value (``strict=False``), option names keep their case (so ``dashscope_api_key`` and
    ``DASHSCOPE_API_KEY`` are distinct), and ``[DEFAULT]`` is an ordinary section that does not leak
    into the others.

    Raises:
        ConfigurationError: The file cannot be read, is not UTF-8 or is not INI. The message names
            the file, the line and the section when known, never a line's text (it may hold a secret).
    """
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"Cannot read credentials file {path}: {exc.strerror}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigurationError(f"Cannot read credentials file {path}: line {line} is not UTF-8.") from None
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0no-defaults\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        # configparser messages quote the offending line, which may hold a secret: build our own.
        raise ConfigurationError(_parse_error_message(path, text, exc)) from None
    return parser


def _parse_error_message(path: Path, text: str, exc: configparser.Error) -> str:
    """Describe a parse error by file, line, section and option, without any line's text."""
    lineno: int | None = getattr(exc, "lineno", None)
    if lineno is None and isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno = exc.errors[0][0]
    where = f" at line {lineno}" if lineno else ""
    section: str | None = getattr(exc, "section", None)
    if section is None and lineno:
        headers = (configparser.ConfigParser.SECTCRE.match(line) for line in text.splitlines()[: lineno - 1])
        section = next((m.group("header") for m in reversed(list(headers)) if m), None)
    if section is not None:
        where += f" in section [{section}]"
    option: str | None = getattr(exc, "option", None)
    if option is not None:
        where += f", option {option}"
    return (
        f"Cannot parse credentials file {path}{where} ({type(exc).__name__}); it must be an INI file "
        f"with [profile] section headers and name = value lines, e.g. dashscope_api_key = …"
    )


def _key_from_credentials(path: Path, profile: str, selected_by: str | None) -> str | None:
    """The DashScope key in section ``profile`` of the credentials file, or None.

    ``dashscope_api_key`` is used if set and non-blank, else ``DASHSCOPE_API_KEY``; other options
    (AccessKey profiles) are ignored. A missing file, or a missing ``default`` section, means no key.

    Args:
        path: The credentials file.
        profile: The section to read.
        selected_by: The environment variable that named ``profile``, or None for ``default``.

    Raises:
        ConfigurationError: The file is malformed, or ``selected_by`` names a section the file lacks.
    """
    parser = _read_credentials(path)
    if parser is None:
        return None
    if not parser.has_section(profile):
        if selected_by is None:
            return None
        sections = ", ".join(parser.sections()) or "(none)"
        raise ConfigurationError(
            f"Profile {quote(profile)} (from {selected_by}) is not in {path}; its sections are: {sections}."
        )
    section = parser[profile]
    for option in KEY_OPTIONS:
        value = section.get(option, "").strip()
        if value:
            return value
    return None


def _access_key_note(path: Path, profile: str) -> str | None:
    """A note when section ``profile`` of ``path`` has AccessKey credentials but no DashScope key.

    AccessKey pairs sign OpenAPI calls; DashScope needs its own API key, so such a profile is a
    likely mistake that would otherwise fall back to the offline engine without a word.
    """
    parser = _read_credentials(path)
    if parser is None or not parser.has_section(profile):
        return None
    if not {option.lower() for option in parser[profile]} & ACCESS_KEY_OPTIONS:
        return None
    return (
        f"profile [{profile}] in {path} has AccessKey credentials but no dashscope_api_key; "
        "DashScope needs its own API key (sk-…) there or in DASHSCOPE_API_KEY"
    )


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    problem = f"{name} must be a {' or '.join(schemes)} URL, got {quote(value)}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check: "Port out of range", "Invalid IPv6 URL"
    except ValueError as exc:
        raise ConfigurationError(f"{problem} ({exc}).") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigurationError(f"{problem}.")
    return value.rstrip("/")


def _output_dir(value: str, home: Path) -> Path:
    """``OUTPUT_DIR`` as a path, with a leading ``~`` expanded (MCP client configs pass it verbatim).

    ``~`` and ``~/…`` resolve against ``home``; ``~user/…`` against that user's home directory.
    """
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        return home / value[2:]
    return Path(value).expanduser()


def _check_header_value(what: str, value: str) -> None:
    """Refuse a value that cannot travel in an HTTP header, naming the bad character, never the value.

    A key pasted with a zero-width space, or typed with a full-width hyphen, would otherwise fail
    inside the WebSocket or HTTP library, whose error message quotes the whole header.
    """
    for position, char in enumerate(value, start=1):
        if not "!" <= char <= "~":  # visible ASCII only: no spaces, controls or non-ASCII
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            raise ConfigurationError(
                f"{what} contains a character that cannot be sent in an HTTP header ({name} at position "
                f"{position}); copy it again without spaces or special characters."
            )


MAX_CONNECTIONS_LIMIT = 100


def _max_connections(value: str) -> int:
    """``DASHSCOPE_MAX_CONNECTIONS`` as a number of connections: 3 when unset, else 1–100."""
    value = value.strip()
    if not value:
        return 3
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_CONNECTIONS_LIMIT:
        raise ConfigurationError(
            f"DASHSCOPE_MAX_CONNECTIONS must be a whole number from 1 to {MAX_CONNECTIONS_LIMIT}, "
            f"got {value[:20]!r}; personal accounts get 3."
        )
    return number


def _number(env: Mapping[str, str], name: str, default: _N, kind: type[_N], *, minimum: float) -> _N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or value != value:  # NaN
        raise ConfigurationError(f"{name} must be a number >= {minimum:g}, got {raw[:20]!r}.")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be 1 or 0, got {raw[:20]!r}.")


def _max_segment_chars(value: str) -> int:
    """``DASHSCOPE_MAX_SEGMENT_CHARS`` as a positive integer (default 300)."""
    if not value:
        return 300
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"DASHSCOPE_MAX_SEGMENT_CHARS must be a positive whole number, got {value[:20]!r}.")
    return number


def load_settings(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
    """Read settings from the environment and the Alibaba Cloud credentials file.

    Key: ``DASHSCOPE_API_KEY``; else ``dashscope_api_key`` (or, if that is absent or blank,
    ``DASHSCOPE_API_KEY``; option names are case-sensitive) in ``~/.alibabacloud/credentials``, in the
    section named by ``ALIBABA_CLOUD_PROFILE``, else ``ALICLOUD_PROFILE``, else ``default``. The file
    is only read when the environment has no key. Other sections and options are ignored; a repeated
    option keeps its last value. A profile named by either variable must exist in the file (when
    the file exists); a missing ``default`` section just means no key. Region: ``DASHSCOPE_REGION`` (``cn-beijing`` default, or ``ap-southeast-1``). Endpoints:
    ``DASHSCOPE_REALTIME_URL`` replaces the realtime endpoint, ``DASHSCOPE_HTTP_BASE_URL`` the HTTP
    base. ``DASHSCOPE_WORKSPACE`` sets the workspace, ``OUTPUT_DIR`` the output directory (a leading ``~``
    is expanded, ``~`` itself against ``home``). ``DASHSCOPE_MAX_CONNECTIONS`` (default 3) bounds
    the realtime connections open at once. ``DASHSCOPE_MAX_SEGMENT_CHARS`` (default 300) is the
    longest text segment committed at once.

    Args:
        environ: Environment to read; defaults to ``os.environ``.
        home: Home directory; defaults to ``Path.home()``.

    Raises:
        ConfigurationError: A malformed credentials file, a selected profile the file lacks, an
            unknown region, a bad URL or a segment length that is not a positive integer.
    """
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home

    key = env.get("DASHSCOPE_API_KEY", "").strip() or None
    source = "env DASHSCOPE_API_KEY" if key else None
    note: str | None = None
    if key is None:
        profile, selected_by = "default", None
        for variable in ("ALIBABA_CLOUD_PROFILE", "ALICLOUD_PROFILE"):
            if env.get(variable, "").strip():
                profile, selected_by = env[variable].strip(), variable
                break
        path = home / ".alibabacloud" / "credentials"
        key = _key_from_credentials(path, profile, selected_by)
        source = f"{path} [{profile}]" if key else None
        note = None if key else _access_key_note(path, profile)

    if key is not None and source is not None:
        _check_header_value(f"The API key from {source}", key)
    workspace = env.get("DASHSCOPE_WORKSPACE", "").strip() or None
    if workspace is not None:
        _check_header_value("DASHSCOPE_WORKSPACE", workspace)

    region = env.get("DASHSCOPE_REGION", "").strip() or "cn-beijing"
    if region not in REGIONS:
        raise ConfigurationError(f"DASHSCOPE_REGION must be one of {', '.join(REGIONS)}, got {quote(region)}.")
    ws_base, http_base = REGIONS[region]

    realtime_url = env.get("DASHSCOPE_REALTIME_URL", "").strip()
    realtime_url = (
        _check_url("DASHSCOPE_REALTIME_URL", realtime_url, ("ws", "wss")) if realtime_url else ws_base + REALTIME_PATH
    )
    http_url = env.get("DASHSCOPE_HTTP_BASE_URL", "").strip()
    http_url = _check_url("DASHSCOPE_HTTP_BASE_URL", http_url, ("http", "https")) if http_url else http_base

    return Settings(
        pool_idle_s=_number(env, "DASHSCOPE_POOL_IDLE_S", 60.0, float, minimum=0),
        ws_deflate=_flag(env, "DASHSCOPE_WS_DEFLATE"),
        api_key=SecretStr(key) if key else None,
        key_source=source,
        region=region,
        workspace=workspace,
        realtime_url=realtime_url,
        http_base_url=http_url,
        output_dir=_output_dir(env.get("OUTPUT_DIR", "").strip() or "output", home),
        key_note=note,
        max_connections=_max_connections(env.get("DASHSCOPE_MAX_CONNECTIONS", "")),
        max_segment_chars=_max_segment_chars(env.get("DASHSCOPE_MAX_SEGMENT_CHARS", "").strip()),
    )
