"""The session pool against the real emulator over loopback: reuse, idle life, the cap, faults, cancels."""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import AudioChunk, ConnectionFailedError, ServiceError, build_request
from alicloud_tts_realtime.connection import RealtimeConnection
from alicloud_tts_realtime.emulator import Emulator, EmulatorConfig, Fault, serve_emulator
from alicloud_tts_realtime.engines.realtime import RealtimeEngine
from alicloud_tts_realtime.service import RetryOptions, synthesize
from alicloud_tts_realtime.settings import Settings

pytestmark = pytest.mark.anyio

KEY = "sk-emulator"
MODEL = "qwen3-tts-flash-realtime"


def settings_for(emulator: Emulator, **overrides: object) -> Settings:
    base = Settings(api_key=SecretStr(KEY), key_source="test", realtime_url=emulator.url)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def events(emulator: Emulator) -> list[list[str]]:
    return [[e.type for e in record.events] for record in emulator.sessions]


async def test_sequential_calls_reuse_one_connection(emulator: Emulator) -> None:
    async with RealtimeEngine(settings_for(emulator)) as engine:
        responses = [await synthesize(build_request(text=f"Call {i}.", voice="Cherry"), engine) for i in range(3)]
        assert emulator.open_sessions == 1  # kept open, idle, between calls
    assert [(r.reused_connection, r.connect_ms > 0) for r in responses] == [(False, True), (True, False), (True, False)]
    assert [r.connect_ms for r in responses[1:]] == [0, 0]
    (record,) = emulator.sessions
    assert [e.type for e in record.events] == [
        "session.update",
        *["input_text_buffer.append", "input_text_buffer.commit"] * 3,
        "session.finish",  # closing the engine ends the session in order
    ]
    assert len({r.session_id for r in responses}) == 1


async def test_another_voice_is_another_connection_and_idle_ones_expire(emulator: Emulator) -> None:
    async with RealtimeEngine(settings_for(emulator, pool_idle_s=0.2)) as engine:
        await synthesize(build_request(text="One.", voice="Cherry"), engine)
        other = await synthesize(build_request(text="Two.", voice="Ethan"), engine)
        assert not other.reused_connection and engine.pool.open_count == 2
        with anyio.fail_after(3):
            while emulator.open_sessions:  # both idle sockets close after 0.2 s
                await anyio.sleep(0.02)
        assert engine.pool.open_count == 0
        again = await synthesize(build_request(text="Three.", voice="Cherry"), engine)
        assert not again.reused_connection
    assert len(emulator.sessions) == 3
    assert events(emulator)[0][-1] == "session.finish"  # an idle expiry finishes the session in order


async def test_the_cap_evicts_an_idle_socket_of_another_voice(emulator: Emulator) -> None:
    async with RealtimeEngine(settings_for(emulator, max_connections=1)) as engine:
        await synthesize(build_request(text="One.", voice="Cherry"), engine)
        await synthesize(build_request(text="Two.", voice="Ethan"), engine)
        assert engine.pool.open_count == 1 and engine.pool.peak_open == 1
    assert len(emulator.sessions) == 2


async def test_six_concurrent_calls_with_three_voices_hold_at_most_three_sockets(emulator: Emulator) -> None:
    voices = ["Cherry", "Ethan", "Serena"] * 2
    results: list[str] = []
    async with RealtimeEngine(settings_for(emulator)) as engine:

        async def one(i: int, voice: str) -> None:
            response = await synthesize(build_request(text=f"Concurrent call {i}.", voice=voice), engine)
            results.append(response.voice)

        async with anyio.create_task_group() as tg:
            for i, voice in enumerate(voices):
                tg.start_soon(one, i, voice)
        assert engine.pool.peak_open <= 3
    assert sorted(results) == sorted(voices)
    assert emulator.peak_open_sessions <= 3 and emulator.connections_total >= 3


async def test_callers_queue_when_every_socket_is_busy() -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", latency_ms=50)) as emulator:
        async with RealtimeEngine(settings_for(emulator, max_connections=1)) as engine:
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(synthesize, build_request(text=f"Queued {i}.", voice="Cherry"), engine)
            assert engine.pool.peak_open == 1
        assert len(emulator.sessions) == 1


async def test_cancelling_a_call_discards_its_socket() -> None:
    slow = EmulatorConfig(audio="signal", rtf=1.0, chunk_ms=50)
    async with serve_emulator(slow) as emulator, RealtimeEngine(settings_for(emulator)) as engine:
        got_audio = anyio.Event()

        async def on_chunk(_chunk: AudioChunk) -> None:
            got_audio.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: synthesize(
                    build_request(text="A long sentence " * 5, voice="Cherry"), engine, on_chunk=on_chunk
                )
            )
            await got_audio.wait()
            tg.cancel_scope.cancel()
        assert engine.pool.open_count == 0 and engine.pool.idle_count == 0
        with anyio.fail_after(3):
            while emulator.open_sessions:
                await anyio.sleep(0.01)
        (record,) = emulator.sessions
        assert record.closed_by == "client" and "session.finish" not in events(emulator)[0]
        after = await synthesize(build_request(text="Next.", voice="Cherry"), engine)
        assert not after.reused_connection  # a fresh socket, never the cancelled one


async def test_a_failed_utterance_is_not_pooled() -> None:
    dropping = EmulatorConfig(audio="signal", drop_after_chunks=1)
    async with serve_emulator(dropping) as emulator, RealtimeEngine(settings_for(emulator)) as engine:
        with pytest.raises(ConnectionFailedError, match="mid-stream"):
            await synthesize(build_request(text="Dropped after one chunk.", voice="Cherry"), engine)
        assert engine.pool.open_count == 0


async def test_prewarm_opens_a_configured_session_ahead_of_need(emulator: Emulator) -> None:
    async with RealtimeEngine(settings_for(emulator)) as engine:
        request = build_request(text="Warm.", voice="Cherry")
        assert await engine.prewarm(request) == 1
        assert emulator.open_sessions == 1 and engine.pool.idle_count == 1
        response = await synthesize(request, engine)
        assert response.reused_connection and response.connect_ms == 0
    assert len(emulator.sessions) == 1


async def test_a_connection_speaks_several_utterances_in_order(emulator: Emulator) -> None:
    config = RealtimeEngine.session_config(build_request(text="x", voice="Cherry"))
    async with await RealtimeConnection.open(settings_for(emulator), MODEL) as conn:
        assert conn.connect_ms > 0 and conn.config is None and conn.reusable
        await conn.configure(config)
        outcomes = []
        for text in ("One.", "Two, longer.", "Three."):
            async with conn.speak(text) as utt:
                audio = b"".join([pcm async for pcm in utt])
            assert audio and conn.reusable
            outcomes.append(utt.outcome)
    assert [o.reused_connection for o in outcomes] == [False, True, True]
    assert [o.characters for o in outcomes] == [4, 12, 6]


async def test_a_drop_before_audio_is_retryable_and_named() -> None:
    # Issue 14 item 9: a TCP drop (1006) before audio is not an "unknown model" and may be retried.
    async with serve_emulator(EmulatorConfig(audio="signal", drop_after_chunks=0)) as dropping:
        async with RealtimeEngine(settings_for(dropping)) as engine:
            with pytest.raises(ConnectionFailedError) as info:
                await synthesize(
                    build_request(text="hi", voice="Cherry"), engine, retry=RetryOptions(max_retries=2, interval=0)
                )
        assert info.value.retryable and "1006" in str(info.value)
        assert "unknown" not in str(info.value) and "model" not in str(info.value)
        assert len(dropping.sessions) == 3  # retried twice


async def test_a_socket_the_server_closed_while_idle_is_replaced_without_an_error() -> None:
    async with serve_emulator(EmulatorConfig(audio="signal", idle_close_s=0.2)) as emulator:
        async with RealtimeEngine(settings_for(emulator)) as engine:
            await synthesize(build_request(text="One.", voice="Cherry"), engine)
            with anyio.fail_after(3):
                while emulator.open_sessions:
                    await anyio.sleep(0.02)
            second = await synthesize(build_request(text="Two.", voice="Cherry"), engine, retry=RetryOptions(0))
        assert not second.reused_connection and emulator.connections_total == 2


async def test_a_socket_closed_as_it_is_reused_is_replaced_at_once() -> None:
    # The server closes connection 1 right after its first response: the next call races that close.
    closing = EmulatorConfig(audio="signal", faults=(Fault(conn=1, response=1, close_idle=True),))
    async with serve_emulator(closing) as emulator, RealtimeEngine(settings_for(emulator)) as engine:
        for i in range(3):
            await synthesize(build_request(text=f"Call {i}.", voice="Cherry"), engine, retry=RetryOptions(0))
        assert emulator.connections_total == 2  # one replacement, no error, no utterance retry


async def test_a_scripted_fault_mid_pool_fails_once_then_a_fresh_socket_succeeds() -> None:
    # Connection 1 drops during its second response, before any audio of it: retried on a new socket.
    faulty = EmulatorConfig(audio="signal", faults=(Fault(conn=1, response=2, drop_after=0),))
    async with serve_emulator(faulty) as emulator, RealtimeEngine(settings_for(emulator)) as engine:
        first = await synthesize(build_request(text="One.", voice="Cherry"), engine)
        second = await synthesize(build_request(text="Two.", voice="Cherry"), engine, retry=RetryOptions(1, 0))
        third = await synthesize(build_request(text="Three.", voice="Cherry"), engine)
        assert (first.reused_connection, second.reused_connection, third.reused_connection) == (False, False, True)
        assert emulator.connections_total == 2


@pytest.mark.parametrize("behaviour", ["queue", "reject"])
async def test_one_connection_works_whether_the_service_queues_or_rejects_commits(behaviour: str) -> None:
    config = RealtimeEngine.session_config(build_request(text="x", voice="Cherry"))
    emulated = EmulatorConfig(audio="signal", latency_ms=30, commit_while_responding=behaviour)  # type: ignore[arg-type]
    async with serve_emulator(emulated) as emulator:
        conn = await RealtimeConnection.open(settings_for(emulator), MODEL)
        await conn.configure(config)
        heard: dict[str, int] = {}

        async def say(text: str) -> None:
            async with conn.speak(text) as utt:
                heard[text] = len(b"".join([pcm async for pcm in utt]))

        async with anyio.create_task_group() as tg:  # by default the second commit waits for response.done
            for text in ("First.", "Second.", "Third."):
                tg.start_soon(say, text)
        assert set(heard) == {"First.", "Second.", "Third."} and all(heard.values()) and conn.reusable
        await conn.aclose()


async def test_a_refused_pipelined_commit_fails_that_utterance_only() -> None:
    config = RealtimeEngine.session_config(build_request(text="x", voice="Cherry"))
    emulated = EmulatorConfig(audio="signal", latency_ms=30, commit_while_responding="reject")
    async with serve_emulator(emulated) as emulator:
        conn = await RealtimeConnection.open(settings_for(emulator), MODEL, pipeline=True)
        await conn.configure(config)
        async with conn.speak("First.") as first:
            with pytest.raises(ServiceError) as info:
                async with conn.speak("Refused.") as refused:
                    async for _ in refused:
                        pass
            assert info.value.event_id == refused.id
            assert b"".join([pcm async for pcm in first])
        assert conn.reusable
        async with conn.speak("After.") as after:
            assert b"".join([pcm async for pcm in after])
        assert after.outcome.characters == len("After.")
        await conn.aclose()


async def test_a_socket_past_its_maximum_age_is_not_handed_out(emulator: Emulator) -> None:
    async with RealtimeEngine(settings_for(emulator, pool_max_age_s=0.2)) as engine:
        first = await synthesize(build_request(text="One.", voice="Cherry"), engine)
        await anyio.sleep(0.3)
        second = await synthesize(build_request(text="Two.", voice="Cherry"), engine)
        assert not first.reused_connection and not second.reused_connection
        with anyio.fail_after(3):
            while emulator.open_sessions > 1:  # the old socket is closed, not left open
                await anyio.sleep(0.02)
    assert emulator.connections_total == 2
