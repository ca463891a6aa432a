"""The Streamable HTTP transport of the MCP server: ``/mcp``, ``/healthz`` and the bearer token.

:func:`build_http_app` wraps a server from :func:`~.mcp_server.build_server` in a stateless
Streamable HTTP app at ``/mcp``. Off loopback it refuses to start without a bearer token, and a
middleware then requires ``Authorization: Bearer <token>`` on every path except ``/healthz``
(registered on the server by :func:`add_health_route`, for load balancers). On loopback the SDK's
DNS-rebinding protection is turned on for the exact address, elsewhere for the names given with
``--allowed-host``. ``GET /mcp`` answers ``405``: a stateless server has no stream to open.

Slow clients: each connection must send a whole request within a deadline, and connections
beyond a cap are refused with ``503`` at once (:func:`serving_http`).

:func:`serving_http` runs an app with uvicorn on a socket it binds itself, so the URL (with the
real port) is known before the first request and a port in use is one sentence;
:func:`serve_http` is what ``alicloud-tts-realtime serve --transport http`` runs. uvicorn is
imported only when a server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ConfigurationError
from .quoting import quote

if TYPE_CHECKING:
    from .mcp_server import ServerOptions

__all__ = [
    "AUTH_TOKEN_ENV",
    "HEALTH_PATH",
    "MCP_PATH",
    "RunningHTTP",
    "add_health_route",
    "build_http_app",
    "serve_http",
    "serving_http",
]

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
AUTH_TOKEN_ENV = "TTS_MCP_AUTH_TOKEN"
_LOOPBACK_NAMES = ("localhost",)
_SHUTDOWN_TIMEOUT_S = 5


def add_health_route(server: MCPServer[Any]) -> None:
    """Register ``GET /healthz`` on ``server``, for load balancers; open even when a bearer token is required.

    It answers ``{"status": "ok", "name": ..., "version": ...}`` with the server's own name and
    version, so a probe can tell which server it reached.
    """
    payload = {"status": "ok", "name": server.name, "version": server.version}

    async def healthz(request: Request) -> Response:
        return JSONResponse(payload)

    server.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)(healthz)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _has_port(host: str) -> bool:
    return host.rsplit("]", 1)[-1].count(":") == 1


def read_token_file(path: str | Path) -> str:
    """The bearer token in the file at ``path`` (first line, stripped), so it never shows in ``ps``.

    Raises:
        ConfigurationError: The file cannot be read or holds no token.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        cause = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigurationError(f"Cannot read the auth token file {quote(str(path))}: {cause}.") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigurationError(f"The auth token file {quote(str(path))} is empty; put the token on its first line.")
    return token


class _BearerTokenMiddleware:
    """Require ``Authorization: Bearer <token>`` on every HTTP request except the health check."""

    def __init__(self, app: ASGIApp, token: str, open_paths: tuple[str, ...] = (HEALTH_PATH,)) -> None:
        self._app = app
        self._token = token.encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths:
            await self._app(scope, receive, send)
            return
        scheme, _, value = Headers(scope=scope).get("authorization", "").partition(" ")
        # compare_digest: the time taken must not reveal how much of a guessed token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self._token):
            response = JSONResponse(
                {"error": "invalid_token", "error_description": "Send Authorization: Bearer <token>."},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="mcp"'},
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


class _PostOnlyMiddleware:
    """Answer ``GET`` and ``DELETE`` on ``/mcp`` with ``405`` and ``Allow: POST``.

    The server is stateless: it has no stream to open for a ``GET`` (the SDK would answer 200
    ``text/event-stream`` and then hold the connection open forever) and no session to delete.
    """

    def __init__(self, app: ASGIApp, path: str = MCP_PATH) -> None:
        self._app = app
        self._paths = (path, path + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self._paths and scope["method"] in ("GET", "DELETE"):
            response = JSONResponse(
                {"error": "method_not_allowed", "error_description": "This stateless MCP endpoint takes POST only."},
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


def build_http_app(server: MCPServer[Any], options: ServerOptions, *, host: str = "127.0.0.1") -> ASGIApp:
    """The Streamable HTTP app: ``/mcp`` (stateless) and ``/healthz``, behind the bearer token if set.

    On a loopback ``host`` the SDK turns on its DNS-rebinding protection (Host and Origin must
    name the loopback address), so a web page cannot reach the server through a rebound name.
    ``options.allowed_hosts`` and ``options.allowed_origins`` add names to that check, and turn it
    on for any other address (``421`` for another Host, ``403`` for another Origin).

    Raises:
        ConfigurationError: ``host`` is not a loopback address and no token is set, or allowed
            origins are given there without allowed hosts.
    """
    if not _is_loopback(host) and options.auth_token is None:
        raise ConfigurationError(
            f"Serving on {host} exposes the server to the network; set --auth-token or {AUTH_TOKEN_ENV}, "
            "or bind to 127.0.0.1."
        )
    security = None
    hosts: list[str] = []
    origins = list(options.allowed_origins)
    if _is_loopback(host):
        # The SDK protects 127.0.0.1, localhost and ::1 by itself; spell it out so that any other
        # loopback address (127.0.0.2 …) is protected too.
        names = sorted({f"[{host.strip('[]')}]" if ":" in host else host, "127.0.0.1", "localhost", "[::1]"})
        hosts += [f"{name}:*" for name in names]
        origins += [f"http://{name}:*" for name in names]
    for allowed in options.allowed_hosts:  # "name" allows any port, "name:port" that one
        hosts += [allowed] if _has_port(allowed) else [allowed, f"{allowed}:*"]
    if origins and not hosts:
        raise ConfigurationError(
            "--allowed-origin on a non-loopback address needs --allowed-host too (the names clients use to reach "
            "this server), since the Host check is what stops DNS rebinding."
        )
    if hosts:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )
    app: ASGIApp = _PostOnlyMiddleware(
        server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, host=host, transport_security=security
        )
    )
    if options.auth_token is not None:
        app = _BearerTokenMiddleware(app, options.auth_token)
    return app


DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 256
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"


def _guarded_protocol(request_timeout: float, max_connections: int) -> type[Any]:
    """uvicorn's h11 protocol with a request deadline and a connection cap, for slow-connection floods.

    uvicorn (0.54) times out only an idle keep-alive connection *after* a response: a client that
    opens a connection and sends half a request (or nothing) holds it, and a file descriptor,
    forever; about a thousand such clients starve every other one, and the bearer token does not
    help because it is checked after the headers. Here each connection must deliver a whole request
    (headers and body) within ``request_timeout`` seconds of opening, or of its previous response,
    or it is closed; and beyond ``max_connections`` open connections a new one gets ``503`` and is
    closed at once, before it costs more than the accept. Responses (progress streams) are not
    timed here: the per-call deadline bounds them.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    received = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.SWITCHED_PROTOCOL)

    class GuardedH11Protocol(H11Protocol):
        _refused = False
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                self._refused = True
                transport.write(_BUSY)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.conn.their_state not in received and not self.transport.is_closing():
                self.transport.close()  # connection_lost tells a waiting app it is gone

    return GuardedH11Protocol


def _quiet_server_class() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """A uvicorn server that leaves SIGINT/SIGTERM to the program embedding it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


@dataclass
class RunningHTTP:
    """A Streamable HTTP server started by :func:`serving_http`.

    Attributes:
        url: The MCP endpoint, e.g. ``http://127.0.0.1:8765/mcp``.
        base_url: The server root, e.g. ``http://127.0.0.1:8765``.
        finished: Set when the server stops by itself (e.g. on SIGINT).
    """

    url: str
    base_url: str
    finished: anyio.Event


@contextlib.asynccontextmanager
async def serving_http(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    handle_signals: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> AsyncIterator[RunningHTTP]:
    """Serve ``app`` with uvicorn on ``host:port`` (0 = any free port) until the block exits.

    The socket is bound here, so a port in use is reported as one sentence and the URL is known
    (with the real port) before the first request.

    Args:
        app: The ASGI app, e.g. from :func:`build_http_app`.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (see ``running.url``).
        handle_signals: Let uvicorn take SIGINT/SIGTERM for a graceful stop (the CLI); embedding
            programs and tests leave them to their own handlers.
        request_timeout: Seconds a connection has to send a whole request (from opening, or from
            its previous response), and that an idle keep-alive connection stays open.
        max_connections: Open connections at most; a further one gets 503 and is closed at once.

    Raises:
        ConfigurationError: The address cannot be bound.
    """
    import uvicorn

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot listen on {host}:{port} ({exc.strerror or type(exc).__name__}); choose another --port or --host."
        ) from None
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    base_url = f"http://{shown}:{bound_port}"
    # log_config=None: uvicorn's default config would log access lines to stdout.
    config = uvicorn.Config(
        app,
        http=_guarded_protocol(request_timeout, max_connections),
        timeout_keep_alive=max(1, round(request_timeout)),
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=_SHUTDOWN_TIMEOUT_S,  # open progress streams must not hold a stop forever
    )
    server = (uvicorn.Server if handle_signals else _quiet_server_class())(config)
    running = RunningHTTP(url=base_url + MCP_PATH, base_url=base_url, finished=anyio.Event())

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            running.finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not server.started and not running.finished.is_set():
            await anyio.sleep(0.01)
        try:
            yield running
        finally:
            server.should_exit = True


async def serve_http(app: ASGIApp, host: str, port: int, options: ServerOptions) -> None:
    """Serve ``app`` as the CLI does: one line on stderr with the URLs, then until SIGINT/SIGTERM."""
    serving = serving_http(
        app,
        host,
        port,
        handle_signals=True,
        request_timeout=options.request_timeout,
        max_connections=options.max_connections,
    )
    async with serving as running:
        auth = "bearer token required" if options.auth_token else "no token"
        print(f"MCP server on {running.url} ({auth}; health: {running.base_url}{HEALTH_PATH})", file=sys.stderr)
        if not _is_loopback(host) and not options.allowed_hosts:
            print(
                "warning: any Host and Origin header is accepted; name this server's public names with "
                "--allowed-host (and browser pages with --allowed-origin) to refuse others",
                file=sys.stderr,
            )
        await running.finished.wait()
