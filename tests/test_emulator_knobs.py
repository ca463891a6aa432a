"""The emulator's connection-level knobs over loopback: several commits, idle close, the connection cap,
commits during a response, scripted faults, the commit-length cap, bounded records and the counters.

A raw websockets client (the helpers of ``test_emulator``) and the official SDK talk to a real
emulator; nothing of the package's own client is used.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from alicloud_tts_realtime import ConfigurationError
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, Fault, parse_fault, serve_emulator
from test_emulator import FLASH, Client, cycle, pcm_of, session

pytestmark = pytest.mark.anyio

KEY = {"Authorization": "Bearer sk-emulator"}


def config(**knobs: Any) -> EmulatorConfig:
    return EmulatorConfig(audio="signal", **knobs)


async def commit_mode(client: Client) -> None:
    reply, _ = await client.update(voice="Cherry", mode="commit")
    assert reply.type == "session.updated"


async def refused(emulator: Emulator) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{emulator.url}?model={FLASH}", additional_headers=KEY)
    return caught.value


def done_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.type == "response.done"]


# --- several commits per session -------------------------------------------------------------------


async def test_several_commits_on_one_connection_answer_in_order() -> None:
    texts = ["First.", "The second one.", "你好。", "Fourth and last."]
    async with serve_emulator(config()) as emulator, session(emulator) as client:
        await commit_mode(client)
        sequential = [await client.speak(text) for text in texts[:2]]  # wait for each response.done
        for text in texts[2:]:  # back to back: queued behind each other
            await client.send(p.InputTextBufferAppend(text=text))
            await client.send(p.InputTextBufferCommit())
        queued = await client.until("response.done")
        queued += await client.until("response.done")
        await client.send(p.SessionFinish())
        assert (await client.recv()).type == "session.finished"
    for events in sequential:
        assert cycle(events) == ["input_text_buffer.committed", *p.RESPONSE_CYCLE]
    dones = [done_events(events)[0] for events in sequential] + done_events(queued)
    assert [d.response.usage.characters for d in dones] == [6, 15, 5, 16]  # the texts, in commit order
    assert len({d.response.id for d in dones}) == 4
    for events in [*sequential, queued]:  # each delta belongs to the response that was running
        current = None
        for e in events:
            if e.type == "response.created":
                current = e.response.id
            elif e.type == "response.audio.delta":
                assert e.response_id == current
    assert (emulator.connections_total, emulator.commits, emulator.stats.responses) == (1, 4, 4)


async def test_the_official_sdk_speaks_several_commits_on_one_connection(emulator: Emulator) -> None:
    import dashscope
    from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime, QwenTtsRealtimeCallback

    events: list[dict[str, Any]] = []
    done = threading.Semaphore(0)
    created, finished = threading.Event(), threading.Event()

    class Callback(QwenTtsRealtimeCallback):
        def on_event(self, message: Any) -> None:
            events.append(message)
            kind = message["type"]
            if kind == "response.done":
                done.release()
            elif kind == "session.created":
                created.set()
            elif kind == "session.finished":
                finished.set()

    def run_sdk() -> None:
        saved, dashscope.api_key = dashscope.api_key, str(emulator.config.api_key)
        try:
            tts = QwenTtsRealtime(model=FLASH, callback=Callback(), url=emulator.url)
        finally:
            dashscope.api_key = saved
        tts.connect()
        try:
            assert created.wait(5)
            tts.update_session(voice="Cherry", mode="commit", sample_rate=16000)
            for text in ("One.", "Number two.", "And three."):
                tts.append_text(text)
                tts.commit()
                assert done.acquire(timeout=5)
            tts.finish()
            assert finished.wait(5)
        finally:
            tts.close()
            tts.thread.join(5)

    await anyio.to_thread.run_sync(run_sdk)
    dones = [e for e in events if e["type"] == "response.done"]
    assert [d["response"]["usage"]["characters"] for d in dones] == [4, 11, 10]
    for d in dones:
        rid = d["response"]["id"]
        audio = b"".join(base64.b64decode(e["delta"]) for e in events if e.get("response_id") == rid and "delta" in e)
        assert len(audio) > 16000 // 4  # every response carried its own audio
    assert emulator.connections_total == 1 and emulator.commits == 3


# --- idle close ----------------------------------------------------------------------------------------


async def test_idle_close_waits_for_the_response_then_closes_1000() -> None:
    knobs = config(idle_close_s=0.3, rtf=1.0, chunk_ms=50)
    async with serve_emulator(knobs) as emulator, session(emulator) as client:
        await commit_mode(client)
        await client.send(p.InputTextBufferAppend(text="Hello there."))  # ~0.8 s of paced audio
        await client.send(p.InputTextBufferCommit())
        await client.until("response.done", timeout=5)  # not closed while the response ran past 0.3 s
        ended = time.perf_counter()
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=3)
        idle = time.perf_counter() - ended
    assert (client.ws.close_code, client.ws.close_reason) == (1000, "idle timeout")
    assert 0.2 < idle < 2.0
    record = emulator.sessions[-1]
    assert (record.closed_by, record.close_code) == ("server", 1000)


async def test_client_events_keep_an_idle_close_away() -> None:
    async with serve_emulator(config(idle_close_s=0.3)) as emulator, session(emulator) as client:
        for _ in range(6):  # 0.6 s in all, never 0.3 s without an event
            await anyio.sleep(0.1)
            await client.send(p.InputTextBufferClear())
            assert (await client.recv()).type == "input_text_buffer.cleared"
        assert emulator.open_sessions == 1
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=2)
    assert client.ws.close_reason == "idle timeout"


# --- the connection cap and the counters ----------------------------------------------------------------


async def test_max_connections_refuses_the_extra_upgrade_with_429() -> None:
    async with serve_emulator(config(max_connections=2)) as emulator:
        async with session(emulator), session(emulator):
            status = await refused(emulator)
            assert emulator.open_sessions == 2
        response = status.response
        body = json.loads(response.body)
        assert response.status_code == 429
        assert body == {
            "code": "Throttling.RateQuota",
            "message": "Requests rate limit exceeded, please try again later.",
            "request_id": body["request_id"],
        }
        with anyio.fail_after(2):
            while emulator.open_sessions:
                await anyio.sleep(0.01)
        async with session(emulator):  # room again
            pass
        stats = emulator.stats
        assert (emulator.peak_open_sessions, emulator.connections_total) == (2, 3)
        assert (stats.upgrade_requests, stats.refused_upgrades) == (4, 1)
        assert [r.status for r in emulator.sessions] == [101, 101, 429, 101]


async def test_stats_are_served_as_json_with_the_key() -> None:
    async with serve_emulator(config(max_commit_chars=50)) as emulator:
        async with session(emulator) as client:
            await commit_mode(client)
            await client.speak("Twelve chars")
        async with httpx.AsyncClient() as http:
            denied = await http.get(emulator.stats_url)
            served = await http.get(emulator.stats_url, headers=KEY)
    assert denied.status_code == 401 and denied.json()["code"] == "InvalidApiKey"
    assert served.status_code == 200
    assert served.json() == {
        "upgrade_requests": 1,
        "connections_total": 1,
        "refused_upgrades": 0,
        "open_sessions": 0,
        "peak_open_sessions": 1,
        "commits": 1,
        "rejected_commits": 0,
        "max_commit_chars_seen": 12,
        "responses": 1,
    }


# --- commits during a response, and too long ---------------------------------------------------------------


async def test_commit_while_responding_reject_fails_that_commit_only() -> None:
    knobs = config(commit_while_responding="reject", rtf=1.0, chunk_ms=50)
    async with serve_emulator(knobs) as emulator, session(emulator) as client:
        await commit_mode(client)
        await client.send(p.InputTextBufferAppend(text="Still speaking."))
        await client.send(p.InputTextBufferCommit())
        await client.until("response.audio.delta")
        await client.send(p.InputTextBufferAppend(text="Too early."))
        second = await client.send(p.InputTextBufferCommit())
        events = await client.until("response.done", timeout=5)
        errors = [e for e in events if e.type == "error"]
        assert len(errors) == 1 and errors[0].error.event_id == second
        assert errors[0].error.type == "invalid_request_error"
        third = await client.speak("Now.")  # the connection stays usable; the rejected text was dropped
    assert done_events(events)[0].response.status == "completed"
    assert done_events(third)[0].response.usage.characters == 4
    assert (emulator.commits, emulator.stats.rejected_commits) == (2, 1)


async def test_a_commit_over_max_commit_chars_is_an_error_and_clears_the_buffer() -> None:
    async with serve_emulator(config(max_commit_chars=10)) as emulator, session(emulator) as client:
        await commit_mode(client)
        await client.send(p.InputTextBufferAppend(text="Eleven char"))
        event_id = await client.send(p.InputTextBufferCommit())
        reply = await client.recv()
        assert isinstance(reply, p.ErrorEvent)
        assert reply.error.model_dump(exclude={"message"}) == {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "param": "text",
            "event_id": event_id,
        }
        assert "11 characters" in reply.error.message and "at most 10" in reply.error.message
        await client.send(p.InputTextBufferCommit())
        assert (await client.recv()).type == "error"  # the buffer was cleared: empty commit
        events = await client.speak("Ten chars.")
    assert done_events(events)[0].response.usage.characters == 10
    assert emulator.max_commit_chars_seen == 11 and emulator.commits == 1


# --- server_commit --------------------------------------------------------------------------------------


async def test_server_commit_feeds_one_open_response_and_reject_spares_the_closing_commit() -> None:
    async with serve_emulator(config(commit_while_responding="reject")) as emulator, session(emulator) as client:
        await client.send(p.InputTextBufferAppend(text="One. "))
        events = await client.until("response.audio.delta")
        await client.send(p.InputTextBufferAppend(text="Two. Three"))
        await anyio.sleep(0.1)
        await client.send(p.InputTextBufferCommit())  # closes the open response: never rejected
        events += await client.until("response.done")
    types = cycle(events)
    assert types.count("response.created") == 1 and "error" not in types
    assert len({e.response_id for e in events if e.type == "response.audio.delta"}) == 1
    assert done_events(events)[0].response.usage.characters == len("One. Two. Three")
    assert len(pcm_of(events)) > 0 and emulator.commits == 1


# --- scripted faults -------------------------------------------------------------------------------------


async def test_drop_after_on_the_first_connection_only() -> None:
    async with serve_emulator(config(faults=(Fault(conn=1, drop_after=2),))) as emulator:
        async with session(emulator) as client:
            await commit_mode(client)
            await client.send(p.InputTextBufferAppend(text="Hello there, how are you?"))
            await client.send(p.InputTextBufferCommit())
            with pytest.raises(ConnectionClosed):
                await client.until("response.done")
        assert client.ws.close_code == 1006
        async with session(emulator) as retry:  # then it succeeds
            await commit_mode(retry)
            events = await retry.speak("Hello there, how are you?")
        assert done_events(events)[0].response.status == "completed"
        first, second = emulator.sessions
    assert (first.conn, first.sent.count("response.audio.delta"), first.close_code) == (1, 2, 1006)
    assert second.conn == 2 and second.closed_by == "client"


async def test_a_fault_on_one_response_counts_that_responses_deltas() -> None:
    faults = (Fault(conn=1, response=2, drop_after=1), Fault(conn=2, response=1, fail_after=0))
    async with serve_emulator(config(faults=faults)) as emulator:
        async with session(emulator) as client:
            await commit_mode(client)
            first = await client.speak("First, in full.")
            await client.send(p.InputTextBufferAppend(text="Second, cut short."))
            await client.send(p.InputTextBufferCommit())
            with pytest.raises(ConnectionClosed):
                await client.until("response.done")
        async with session(emulator) as client:
            await commit_mode(client)
            await client.send(p.InputTextBufferAppend(text="Fails at once."))
            await client.send(p.InputTextBufferCommit())
            events = await client.until("error")
            with pytest.raises(ConnectionClosed):
                await client.recv()
        assert client.ws.close_code == 1011
        async with session(emulator) as client:  # connection 3 has no fault
            await commit_mode(client)
            third = await client.speak("Fine.")
    assert done_events(first)[0].response.status == "completed"
    assert emulator.sessions[0].sent.count("response.audio.delta") == len(pcm_deltas(first)) + 1
    assert events[-1].error.type == "server_error" and "response.audio.delta" not in [e.type for e in events]
    assert done_events(third)[0].response.status == "completed"


def pcm_deltas(events: list[Any]) -> list[Any]:
    return [e for e in events if e.type == "response.audio.delta"]


async def test_reject_and_throttle_faults_hit_one_connection() -> None:
    faults = (Fault(conn=1, reject_status=429), Fault(conn=2, throttle=True))
    async with serve_emulator(config(faults=faults)) as emulator:
        status = await refused(emulator)
        assert status.response.status_code == 429
        assert json.loads(status.response.body)["code"] == "Throttling.RateQuota"
        async with connect(f"{emulator.url}?model={FLASH}", additional_headers=KEY) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1011, "To many requests. Your requests are being throttled...")
        async with session(emulator) as client:
            await commit_mode(client)
            await client.speak("Third time lucky.")
    assert [r.status for r in emulator.sessions] == [429, 101, 101]


async def test_close_idle_closes_a_connection_once_its_response_ends() -> None:
    async with serve_emulator(config(faults=(Fault(conn=1, close_idle=True),))) as emulator:
        async with session(emulator) as client:
            await commit_mode(client)
            events = await client.speak("Then the server hangs up.")
            with pytest.raises(ConnectionClosed):
                await client.recv()
        assert (client.ws.close_code, client.ws.close_reason) == (1000, "idle timeout")
        assert done_events(events)[0].response.status == "completed"
        async with session(emulator) as client:  # the next connection is left alone
            await commit_mode(client)
            await client.speak("One.")
            await client.speak("Two.")
        assert emulator.sessions[1].closed_by == "client"


def test_fault_specs_parse_and_bad_ones_say_why() -> None:
    assert parse_fault("conn=1:drop-after=2") == Fault(conn=1, drop_after=2)
    assert parse_fault("conn=2:response=1:fail-after=0") == Fault(conn=2, response=1, fail_after=0)
    assert parse_fault("conn=1:reject=429") == Fault(conn=1, reject_status=429)
    assert parse_fault("conn=1:throttle") == Fault(conn=1, throttle=True)
    assert parse_fault("close-idle") == Fault(close_idle=True)
    for spec, words in [
        ("conn=1", "needs an effect"),
        ("conn=one:throttle", "conn needs a whole number"),
        ("conn=1:explode", "unknown part 'explode'"),
        ("conn=0:throttle", "1-based ordinal"),
        ("conn=1:reject=200", "400-599"),
        ("response=1:throttle", "whole connection"),
        ("conn=1:conn=2:throttle", "given twice"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            parse_fault(spec)
    for bad in ({"max_connections": 0}, {"idle_close_s": 0}, {"max_commit_chars": 0}, {"max_session_records": 0}):
        with pytest.raises(ConfigurationError):
            EmulatorConfig(**bad)
    with pytest.raises(ConfigurationError, match="commit_while_responding"):
        EmulatorConfig(commit_while_responding="drop")  # type: ignore[arg-type]


# --- bounded records ------------------------------------------------------------------------------------


async def test_records_and_their_event_logs_are_bounded() -> None:
    async with serve_emulator(config(max_session_records=2, max_events_per_session=3)) as emulator:
        for _ in range(3):
            async with session(emulator) as client:
                await commit_mode(client)
                await client.speak("Hi.")
                await client.send(p.SessionFinish())
                assert (await client.recv()).type == "session.finished"
        records = emulator.sessions
        assert [r.conn for r in records] == [2, 3]
        assert [e.type for e in records[-1].events] == [
            "input_text_buffer.append",
            "input_text_buffer.commit",
            "session.finish",
        ]
        assert records[-1].sent == ["response.output_item.done", "response.done", "session.finished"]
        assert emulator.connections_total == 3


# --- the CLI --------------------------------------------------------------------------------------------


@contextmanager
def emulator_process(*options: str) -> Iterator[tuple[str, str]]:
    """``alicloud-tts-realtime emulator`` in a subprocess; yields its realtime URL and stats URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--port", "0", "--audio", "signal", *options],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("DashScope emulator ready: realtime "), lines
        yield lines[0].split()[-1], lines[4].split()[-1]
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_the_cli_takes_every_new_knob() -> None:
    options = ("--fault", "conn=1:reject=503", "--max-connections", "1", "--idle-close-s", "5")
    options += ("--commit-while-responding", "reject", "--max-commit-chars", "600", "--max-session-records", "8")
    with emulator_process(*options, "--max-events-per-session", "16") as (url, stats_url):
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"{url}?model={FLASH}", additional_headers=KEY)
        assert caught.value.response.status_code == 503
        async with connect(f"{url}?model={FLASH}", additional_headers=KEY) as ws:
            assert p.parse_server_event(await ws.recv()).type == "session.created"
            with pytest.raises(InvalidStatus) as capped:
                await connect(f"{url}?model={FLASH}", additional_headers=KEY)
            assert capped.value.response.status_code == 429
        async with httpx.AsyncClient() as http:
            stats = (await http.get(stats_url, headers=KEY)).json()
    assert (stats["upgrade_requests"], stats["connections_total"], stats["refused_upgrades"]) == (3, 1, 2)


def test_a_bad_fault_on_the_cli_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--fault", "conn=1:explode"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: Invalid emulator configuration: fault 'conn=1:")
