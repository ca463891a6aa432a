"""The sans-I/O client session driven by scripted server events."""

from __future__ import annotations

import pytest

from alicloud_tts_realtime import InvalidStateError, ProtocolViolationError, ServiceError
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.audio import encode_chunk
from alicloud_tts_realtime.session import (
    Audio,
    ClientSession,
    Created,
    Finished,
    Ready,
    ResponseComplete,
    SessionState,
)

CONFIG = p.SessionConfig(
    voice="Cherry", mode="commit", response_format="pcm", sample_rate=16000, language_type="Chinese"
)


def created() -> p.SessionCreated:
    return p.SessionCreated(session=p.SessionConfig(id="sess_1", model="qwen3-tts-flash-realtime", voice="Cherry"))


def updated(**overrides: object) -> p.SessionUpdated:
    fields = {"id": "sess_1", "voice": "Cherry", "mode": "commit", "response_format": "pcm", "sample_rate": 16000}
    fields["language_type"] = "chinese"  # echoed lower-cased (§3.3)
    fields.update(overrides)
    return p.SessionUpdated(session=p.SessionConfig(**fields))


def response_events(pcm: bytes) -> list[p.ServerEvent]:
    ids = {"response_id": "resp_1", "item_id": "item_1"}
    info = p.ResponseInfo(id="resp_1")
    item = p.Item(id="item_1")
    return [
        p.InputTextBufferCommitted(),
        p.ResponseCreated(response=info),
        p.ResponseOutputItemAdded(response_id="resp_1", item=item),
        p.ResponseContentPartAdded(**ids),
        p.ResponseAudioDelta(**ids, delta=encode_chunk(pcm)),
        p.ResponseAudioDone(**ids),
        p.ResponseContentPartDone(**ids),
        p.ResponseOutputItemDone(response_id="resp_1", item=item),
        p.ResponseDone(response=p.ResponseInfo(id="resp_1", status="completed", usage=p.Usage(characters=5))),
    ]


def test_full_session_in_order() -> None:
    core = ClientSession()
    (out,) = core.receive(created())
    assert isinstance(out, Created) and core.state is SessionState.CREATED and core.take_sends() == []
    core.configure(CONFIG)
    (send,) = core.take_sends()
    assert isinstance(send, p.SessionUpdate) and send.session == CONFIG
    assert core.state is SessionState.CONFIGURING
    (ready,) = core.receive(updated())
    assert isinstance(ready, Ready) and core.state is SessionState.READY
    core.append("你好")
    utterance = core.commit()
    append, commit = core.take_sends()
    assert isinstance(append, p.InputTextBufferAppend) and isinstance(commit, p.InputTextBufferCommit)
    assert utterance == commit.event_id and core.state is SessionState.RESPONDING
    outputs = [out for event in response_events(b"\x01\x00\x02\x00") for out in core.receive(event)]
    assert [type(o) for o in outputs] == [Audio, ResponseComplete]
    assert outputs[0].pcm == b"\x01\x00\x02\x00"  # type: ignore[union-attr]
    assert {o.utterance_id for o in outputs} == {utterance}  # type: ignore[union-attr]
    assert outputs[1].usage.characters == 5  # type: ignore[union-attr]
    assert core.state is SessionState.READY
    core.finish()
    (finish,) = core.take_sends()
    assert isinstance(finish, p.SessionFinish)
    assert core.receive(p.SessionFinished()) == (Finished(),)
    assert core.state is SessionState.CLOSED
    assert core.session_id == "sess_1"


def test_error_event_becomes_service_error_with_fields() -> None:
    core = ClientSession(CONFIG)
    core.receive(created())
    detail = p.ErrorDetail(
        type="invalid_request_error", code="invalid_value", message="bad voice", param="session.voice"
    )
    with pytest.raises(ServiceError) as info:
        core.receive(p.ErrorEvent(error=detail))
    assert info.value.param == "session.voice" and info.value.code == "invalid_value"
    assert not info.value.retryable
    assert core.state is SessionState.FAILED
    server = p.ErrorEvent(error=p.ErrorDetail(type="server_error", message="boom"))
    with pytest.raises(ServiceError) as info:
        ClientSession(CONFIG).receive(server)
    assert info.value.retryable


def test_echo_that_contradicts_the_request_is_refused() -> None:
    core = ClientSession(CONFIG)
    core.receive(created())
    with pytest.raises(ProtocolViolationError, match="sample_rate"):
        core.receive(updated(sample_rate=24000))


def test_a_huge_or_forged_echo_is_quoted_short_and_escaped() -> None:
    # Hardening item 4: a value the service sends is quoted at most ~80 characters, control characters escaped.
    core = ClientSession(CONFIG)
    core.receive(created())
    with pytest.raises(ProtocolViolationError) as info:
        core.receive(updated(voice="Evil\nINFO forged line " + "x" * 100_000))
    message = str(info.value)
    assert len(message) < 300 and "\n" not in message and "\\n" in message


def test_fields_not_echoed_are_fine() -> None:
    core = ClientSession(CONFIG)
    core.receive(created())
    (ready,) = core.receive(p.SessionUpdated(session=p.SessionConfig(id="sess_1")))
    assert core.take_sends()[0].type == "session.update"
    assert isinstance(ready, Ready)


def test_out_of_order_events_are_violations() -> None:
    core = ClientSession(CONFIG)
    with pytest.raises(ProtocolViolationError, match="connecting"):
        core.receive(p.ResponseAudioDelta(response_id="r", item_id="i", delta="AAAA"))


def test_unknown_events_are_skipped_and_wrong_calls_name_the_state() -> None:
    core = ClientSession(CONFIG)
    assert core.receive(p.UnknownEvent(type="x")) == ()
    with pytest.raises(InvalidStateError, match="connecting"):
        core.speak("hi")
    core.receive(created())
    core.receive(updated())
    with pytest.raises(InvalidStateError, match="configure: the session is ready"):
        core.configure(CONFIG)  # one voice configuration for life (§3.2)
    core.finish()
    with pytest.raises(InvalidStateError, match="finishing"):
        core.speak("hi")


def test_several_utterances_per_session() -> None:
    core = ClientSession(CONFIG)
    core.receive(created())
    core.receive(updated())
    for _ in range(2):
        core.speak("one")
        outs = [o for e in response_events(b"\x00\x00") for o in core.receive(e)]
        assert isinstance(outs[-1], ResponseComplete)
        assert core.state is SessionState.READY


def test_utterance_speaks_when_ready_and_finishes_after_the_response() -> None:
    from alicloud_tts_realtime.session import Utterance

    shot = Utterance(CONFIG, "你好")
    sends, audio = shot.receive(created())
    assert [type(e) for e in sends] == [p.SessionUpdate] and audio == []
    sends, _ = shot.receive(updated())
    assert [type(e) for e in sends] == [p.InputTextBufferAppend, p.InputTextBufferCommit]
    assert isinstance(sends[0], p.InputTextBufferAppend) and sends[0].text == "你好"
    collected: list[bytes] = []
    for event in response_events(b"\x01\x00"):
        sends, audio = shot.receive(event)
        collected += audio
    assert collected == [b"\x01\x00"] and [type(e) for e in sends] == [p.SessionFinish]
    assert not shot.finished
    shot.receive(p.SessionFinished())
    outcome = shot.outcome("qwen3-tts-flash-realtime")
    assert shot.finished and (outcome.finish_reason, outcome.characters, outcome.session_id) == ("stop", 5, "sess_1")


def test_utterance_without_audio_is_an_error() -> None:
    from alicloud_tts_realtime import NoAudioError
    from alicloud_tts_realtime.session import Utterance

    shot = Utterance(CONFIG, "hi")
    shot.receive(created())
    shot.receive(updated())
    shot.receive(p.ResponseDone(response=p.ResponseInfo(id="resp_1", status="completed")))
    shot.receive(p.SessionFinished())
    with pytest.raises(NoAudioError):
        shot.outcome("m")


def test_server_commit_lets_the_service_start_responses_and_sums_their_characters() -> None:
    from alicloud_tts_realtime.session import Utterance

    config = CONFIG.model_copy(update={"mode": "server_commit"})
    shot = Utterance(config, "Two segments. Here.")
    shot.receive(created())
    sends, _ = shot.receive(updated(mode="server_commit"))
    assert [type(e) for e in sends] == [p.InputTextBufferAppend, p.SessionFinish]  # the SDK sample's order
    heard: list[bytes] = []
    for _ in range(2):  # two responses of the service's own segmentation, no commit from us
        for event in response_events(b"\x01\x00"):
            more, audio = shot.receive(event)
            assert more == []
            heard += audio
            assert shot.core.responding is not isinstance(event, (p.InputTextBufferCommitted, p.ResponseDone))
    shot.receive(p.SessionFinished())
    assert heard == [b"\x01\x00", b"\x01\x00"]
    assert shot.outcome("qwen3-tts-flash-realtime").characters == 10  # 5 + 5


def test_commit_mode_refuses_a_response_nobody_asked_for() -> None:
    core = ClientSession(CONFIG)
    core.receive(created())
    core.receive(updated())
    with pytest.raises(ProtocolViolationError, match=r"response\.created"):
        core.receive(p.ResponseCreated(response=p.ResponseInfo(id="resp_9")))
