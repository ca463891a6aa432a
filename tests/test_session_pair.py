"""The client's sans-I/O session joined to the emulator's sans-I/O session in memory.

h11's ``ConnectionPair`` idea: no sockets, no tasks, no clock. Frames go through the real JSON
encoding both ways, so each side parses what the other really sends. The emulator's response
runner is played one frame per step, so a commit can arrive while a response is running.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import pytest

from alicloud_tts_realtime import InvalidStateError, ServiceError
from alicloud_tts_realtime import protocol as p
from alicloud_tts_realtime.emulator import EmulatorConfig
from alicloud_tts_realtime.emulator.core import (
    Action,
    CloseConnection,
    DropConnection,
    EmulatorSession,
    StartResponse,
    billed_characters,
)
from alicloud_tts_realtime.session import (
    TRANSITIONS,
    Audio,
    ClientSession,
    Output,
    Ready,
    ResponseComplete,
    SessionState,
    UtteranceFailed,
)

MODEL = "qwen3-tts-flash-realtime"
CONFIG = p.SessionConfig(voice="Cherry", mode="commit", response_format="pcm", sample_rate=16000)
PCM = b"\x01\x00" * 8


class Pair:
    """A client session and an emulator session wired together through JSON frames."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.client = ClientSession()
        self.server = EmulatorSession(config or EmulatorConfig(audio="signal"), MODEL)
        self.to_client: deque[str] = deque()
        self.responses: deque[Iterator[Action]] = deque()
        self.closed: int | None = None
        self.outputs: list[Output] = []
        self.states: list[SessionState] = [self.client.state]
        self._perform(self.server.opening())

    def _perform(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, StartResponse):
                self.responses.append(self._run(action))
            elif isinstance(action, CloseConnection):
                self.closed = action.code
            elif isinstance(action, DropConnection):
                self.closed = 1006
            elif isinstance(action, p._Event):
                self.to_client.append(p.dump_event(action))  # type: ignore[arg-type]

    def _run(self, ctx: StartResponse) -> Iterator[Action]:
        yield from self.server.begin_response(ctx)
        for _ in range(2):
            faults = self.server.before_delta()
            if faults:
                yield from faults
                return
            yield self.server.audio_delta(ctx, PCM)
        yield from self.server.finish_response(ctx)

    def _note(self) -> None:
        if self.states[-1] is not self.client.state:
            self.states.append(self.client.state)

    def send(self) -> None:
        """Deliver the client's queued events to the emulator."""
        self._note()
        for event in self.client.take_sends():
            self._perform(self.server.receive_frame(p.dump_event(event)))

    def step(self) -> bool:
        """Deliver one server frame (or let the running response make one); False when nothing moved."""
        if not self.to_client:
            if not self.responses:
                return False
            try:
                self._perform([next(self.responses[0])])
            except StopIteration:
                self.responses.popleft()
            return True
        outs = self.client.receive(p.parse_server_event(self.to_client.popleft()))
        self.outputs.extend(outs)
        self.send()
        return True

    def run(self) -> list[Output]:
        """Step until quiet; return the outputs of this run."""
        start = len(self.outputs)
        while self.step():
            pass
        return self.outputs[start:]

    def ready(self, config: p.SessionConfig = CONFIG) -> None:
        self.run()
        self.client.configure(config)
        self.send()
        assert any(isinstance(o, Ready) for o in self.run())


def audio_of(outputs: Sequence[Output], utterance: str) -> bytes:
    return b"".join(o.pcm for o in outputs if isinstance(o, Audio) and o.utterance_id == utterance)


def done(outputs: Sequence[Output]) -> dict[str, ResponseComplete]:
    return {o.utterance_id: o for o in outputs if isinstance(o, ResponseComplete)}


def test_one_session_walks_the_table_and_serves_several_utterances() -> None:
    pair = Pair()
    pair.ready()
    texts = ["First.", "第二句。", "Third one."]
    ids = []
    for text in texts:
        ids.append(pair.client.speak(text))
        pair.send()
        outs = pair.run()
        assert audio_of(outs, ids[-1]) == PCM * 2
        (complete,) = done(outs).values()
        assert complete.utterance_id == ids[-1] and complete.status == "completed"
        assert complete.usage is not None and complete.usage.characters == billed_characters(text)
        assert pair.client.state is SessionState.READY
    pair.client.finish()
    pair.send()
    pair.run()
    S = SessionState
    assert pair.states == [
        S.CONNECTING, S.CREATED, S.CONFIGURING, S.READY,
        *[S.RESPONDING, S.READY] * 3,
        S.FINISHING, S.CLOSED,
    ]  # fmt: skip
    assert len(set(ids)) == 3 and pair.closed is None


def test_every_step_of_the_table_is_reachable_from_connecting() -> None:
    reachable = {SessionState.CONNECTING}
    frontier = [SessionState.CONNECTING]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(SessionState) - {SessionState.FAILED}  # FAILED: errors, not table steps


def test_a_commit_during_a_response_is_queued_by_the_service() -> None:
    pair = Pair(EmulatorConfig(audio="signal", commit_while_responding="queue"))
    pair.ready()
    first = pair.client.speak("One.")
    pair.send()
    pair.step()  # committed
    pair.step()  # the response starts
    second = pair.client.speak("Two.")  # pipelined
    pair.send()
    outs = pair.run()
    assert audio_of(outs, first) == PCM * 2 and audio_of(outs, second) == PCM * 2
    assert list(done(outs)) == [first, second]
    assert pair.client.state is SessionState.READY


def test_a_rejected_commit_fails_only_its_utterance_and_the_session_goes_on() -> None:
    pair = Pair(EmulatorConfig(audio="signal", commit_while_responding="reject"))
    pair.ready()
    first = pair.client.speak("One.")
    pair.send()
    pair.step()
    pair.step()
    second = pair.client.speak("Rejected text.")
    pair.send()
    outs = pair.run()
    (failed,) = [o for o in outs if isinstance(o, UtteranceFailed)]
    assert failed.utterance_id == second and isinstance(failed.error, ServiceError)
    assert failed.error.event_id == second
    assert list(done(outs)) == [first] and pair.client.state is SessionState.READY
    # The refused text was cleared: the next utterance bills only its own characters.
    third = pair.client.speak("Three.")
    pair.send()
    (complete,) = done(pair.run()).values()
    assert complete.utterance_id == third and complete.usage is not None
    assert complete.usage.characters == billed_characters("Three.")


def test_clear_drops_text_not_yet_committed() -> None:
    pair = Pair()
    pair.ready()
    pair.client.append("Never spoken. ")
    pair.client.clear()
    pair.client.append("Spoken.")
    utterance = pair.client.commit()
    pair.send()
    (complete,) = done(pair.run()).values()
    assert complete.utterance_id == utterance and complete.usage is not None
    assert complete.usage.characters == billed_characters("Spoken.")


def test_finish_while_responding_completes_the_response_first() -> None:
    pair = Pair()
    pair.ready()
    utterance = pair.client.speak("Last words.")
    pair.client.finish()
    pair.send()
    outs = pair.run()
    assert audio_of(outs, utterance) == PCM * 2 and pair.client.state is SessionState.CLOSED


def test_one_voice_for_life_and_no_commit_in_server_commit_mode() -> None:
    pair = Pair()
    pair.ready()
    with pytest.raises(InvalidStateError, match="configure"):
        pair.client.configure(CONFIG.model_copy(update={"voice": "Ethan"}))
    server_mode = Pair()
    server_mode.ready(CONFIG.model_copy(update={"mode": "server_commit"}))
    with pytest.raises(InvalidStateError, match="server_commit"):
        server_mode.client.commit()


def test_a_server_error_fails_the_whole_session() -> None:
    pair = Pair(EmulatorConfig(audio="signal", fail_after_chunks=1))
    pair.ready()
    pair.client.speak("Doomed.")
    pair.send()
    with pytest.raises(ServiceError) as info:
        pair.run()
    assert info.value.retryable and pair.client.state is SessionState.FAILED
    assert pair.closed is None  # the close comes right after the error frame
    pair.run()
    assert pair.closed == 1011
