"""Settings: credentials, region, endpoints and the output directory, read on demand.

Nothing is read at import time. :func:`load_settings` takes the environment and home directory as
arguments (defaulting to the real ones) so tests can pass their own. The API key is a
:class:`pydantic.SecretStr`: its ``repr`` and ``str`` are masked, and only :meth:`Settings.bearer`
reveals it, for the one header that needs it.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from .errors import ConfigurationError

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

    @property
    def audio_dir(self) -> Path:
        """Directory where synthesized audio files are written."""
        return self.output_dir / AUDIO_SUBDIR

    @property
    def has_key(self) -> bool:
        return self.api_key is not None

    def bearer(self) -> str:
        """The ``Authorization`` header value. Never log or store the result.

        Raises:
            ConfigurationError: No key is configured.
        """
        if self.api_key is None:
            raise ConfigurationError(
                "No DashScope API key: set DASHSCOPE_API_KEY, or dashscope_api_key in "
                "~/.alibabacloud/credentials (or use the offline engine)."
            )
        return "Bearer " + self.api_key.get_secret_value()


def _key_from_credentials(path: Path, profile: str) -> str | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        # configparser messages quote the offending line, which may hold a secret: name only the type.
        raise ConfigurationError(
            f"Cannot parse credentials file {path} ({type(exc).__name__}); it must be an INI file with "
            f"[{profile}] and dashscope_api_key=…"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read credentials file {path}: {exc.strerror}.") from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    # configparser lower-cases option names, so DASHSCOPE_API_KEY is found as dashscope_api_key too.
    value = section.get("dashscope_api_key", "").strip()
    return value or None


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    problem = f"{name} must be a {' or '.join(schemes)} URL, got {value!r}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check: "Port out of range", "Invalid IPv6 URL"
    except ValueError as exc:
        raise ConfigurationError(f"{problem} ({exc}).") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigurationError(f"{problem}.")
    return value.rstrip("/")


def load_settings(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
    """Read settings from the environment and the Alibaba Cloud credentials file.

    Key: ``DASHSCOPE_API_KEY``; else ``dashscope_api_key`` in ``~/.alibabacloud/credentials``, in the
    section named by ``ALIBABA_CLOUD_PROFILE``, else ``ALICLOUD_PROFILE``, else ``default``.
    Region: ``DASHSCOPE_REGION`` (``cn-beijing`` default, or ``ap-southeast-1``). Endpoints:
    ``DASHSCOPE_REALTIME_URL`` replaces the realtime endpoint, ``DASHSCOPE_HTTP_BASE_URL`` the HTTP
    base. ``DASHSCOPE_WORKSPACE`` sets the workspace, ``OUTPUT_DIR`` the output directory.

    Args:
        environ: Environment to read; defaults to ``os.environ``.
        home: Home directory; defaults to ``Path.home()``.

    Raises:
        ConfigurationError: A malformed credentials file, unknown region or bad URL.
    """
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home

    key = env.get("DASHSCOPE_API_KEY", "").strip() or None
    source = "env DASHSCOPE_API_KEY" if key else None
    if key is None:
        profile = env.get("ALIBABA_CLOUD_PROFILE") or env.get("ALICLOUD_PROFILE") or "default"
        path = home / ".alibabacloud" / "credentials"
        key = _key_from_credentials(path, profile)
        source = f"{path} [{profile}]" if key else None

    region = env.get("DASHSCOPE_REGION", "").strip() or "cn-beijing"
    if region not in REGIONS:
        raise ConfigurationError(f"DASHSCOPE_REGION must be one of {', '.join(REGIONS)}, got {region!r}.")
    ws_base, http_base = REGIONS[region]

    realtime_url = env.get("DASHSCOPE_REALTIME_URL", "").strip()
    realtime_url = (
        _check_url("DASHSCOPE_REALTIME_URL", realtime_url, ("ws", "wss")) if realtime_url else ws_base + REALTIME_PATH
    )
    http_url = env.get("DASHSCOPE_HTTP_BASE_URL", "").strip()
    http_url = _check_url("DASHSCOPE_HTTP_BASE_URL", http_url, ("http", "https")) if http_url else http_base

    return Settings(
        api_key=SecretStr(key) if key else None,
        key_source=source,
        region=region,
        workspace=env.get("DASHSCOPE_WORKSPACE", "").strip() or None,
        realtime_url=realtime_url,
        http_base_url=http_url,
        output_dir=Path(env.get("OUTPUT_DIR", "").strip() or "output"),
    )
