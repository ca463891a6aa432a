"""Slow-connection flood of the HTTP transport: half-sent requests vs /healthz.

Usage: ``python benchmarks/slow_http.py [--connections 1020] [--timeout 10] [--max-connections 256]``.
Serves the MCP app on loopback with the given request timeout and connection cap, opens
``--connections`` sockets that each send half a request and stop, and meanwhile asks ``/healthz``
every 0.2 s. Prints one JSON line: how many connections were refused at once (503), how many
were held, when the server closed the last held one, and the health checks' success count and
worst latency. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.abc
import httpx

from alicloud_tts_realtime.mcp_http import build_http_app, serving_http
from alicloud_tts_realtime.mcp_server import ServerOptions, build_server
from alicloud_tts_realtime.settings import load_settings

HALF = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


async def flood(connections: int, timeout: float, cap: int) -> dict[str, object]:
    result: dict[str, object] = {"connections": connections, "request_timeout_s": timeout, "max_connections": cap}
    with tempfile.TemporaryDirectory() as tmp:
        options = ServerOptions()
        app = build_http_app(build_server(load_settings({}, home=Path(tmp)), options), options)
        async with serving_http(app, "127.0.0.1", 0, request_timeout=timeout, max_connections=cap) as running:
            port = int(running.base_url.rsplit(":", 1)[1])
            health = {"ok": 0, "failed": 0, "worst_ms": 0.0}
            stop = anyio.Event()

            async def check() -> None:
                async with httpx.AsyncClient(timeout=5) as http:
                    while not stop.is_set():
                        began = time.perf_counter()
                        try:
                            ok = (await http.get(running.base_url + "/healthz")).status_code == 200
                        except httpx.HTTPError:
                            ok = False
                        health["ok" if ok else "failed"] += 1
                        health["worst_ms"] = max(health["worst_ms"], (time.perf_counter() - began) * 1000)
                        await anyio.sleep(0.2)

            refused = held = 0
            closed_at: list[float] = []
            started = time.perf_counter()

            async def one() -> None:
                nonlocal refused, held
                stream = await anyio.connect_tcp("127.0.0.1", port)
                async with stream:
                    await stream.send(HALF)
                    data = b""
                    try:
                        while True:
                            data += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass
                    if data.startswith(b"HTTP/1.1 503"):
                        refused += 1
                    else:
                        held += 1
                        closed_at.append(time.perf_counter() - started)

            async with anyio.create_task_group() as tg:
                tg.start_soon(check)
                async with anyio.create_task_group() as flooders:
                    for _ in range(connections):
                        flooders.start_soon(one)
                        await anyio.sleep(0)
                await anyio.sleep(0.5)
                stop.set()
            result.update(
                refused_at_once=refused,
                held=held,
                last_held_closed_after_s=round(max(closed_at, default=0.0), 2),
                health_ok=health["ok"],
                health_failed=health["failed"],
                health_worst_ms=round(float(health["worst_ms"]), 1),
            )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1020)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=256)
    args = parser.parse_args()
    print(json.dumps({"slow_http": anyio.run(flood, args.connections, args.timeout, args.max_connections)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
