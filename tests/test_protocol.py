"""Round trips of the frames quoted in the protocol document (§3.4), and tolerant parsing."""

from __future__ import annotations

import json

import pytest

from alicloud_tts_realtime import ProtocolViolationError
from alicloud_tts_realtime import protocol as p

# Observed frames (OMUGW fixtures, SDK-JAVA fixtures, DOC-SE examples) copied from §3.4.
OBSERVED = {
    "session.created": '{"event_id":"event_PMzeieect6etdwbMqx8lt","type":"session.created","session":{"object":"realtime.session","mode":"server_commit","model":"qwen3-tts-flash-realtime","voice":"Cherry","response_format":"pcm","sample_rate":24000,"id":"sess_TU2mrgIW8oIMfIjV8tSKT"}}',
    "session.updated": '{"event_id":"event_HrIkC4JUVRyXUyCMuPeAJ","type":"session.updated","session":{"id":"sess_TU2mrgIW8oIMfIjV8tSKT","object":"realtime.session","model":"qwen3-tts-flash-realtime","voice":"Cherry","mode":"commit","response_format":"pcm","sample_rate":16000,"language_type":"chinese"}}',
    "input_text_buffer.committed": '{"event_id":"event_1","type":"input_text_buffer.committed","item_id":""}',
    "input_text_buffer.cleared": '{"event_id":"event_1122","type":"input_text_buffer.cleared"}',
    "response.audio.delta": '{"event_id":"event_EnRZHRRqOOpNZnj56onql","type":"response.audio.delta","response_id":"resp_Hk9RCaeoY9bEA9aHoenUD","item_id":"item_QlDl3OxhiOOv5ZGVRcL5K","output_index":0,"content_index":0,"delta":"AAABAA=="}',
    "response.output_item.done": '{"type":"response.output_item.done","response_id":"r1","output_index":0,"item":{"id":"i1","object":"realtime.item","type":"message","status":"completed","role":"assistant","output":{"usage":{"input_tokens":8,"output_tokens":32,"total_tokens":40,"input_tokens_details":{"text_tokens":8},"output_tokens_details":{"audio_tokens":32,"text_tokens":0}}}}}',
    "response.done": '{"event_id":"event_AZziwzQFSgjCYbhrArhxl","type":"response.done","response":{"id":"r1","object":"realtime.response","conversation_id":"","status":"completed","modalities":["text","audio"],"voice":"Cherry","output":[{"id":"i1","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":""}]}],"usage":{"characters":25,"total_tokens":40,"input_tokens":8,"output_tokens":32,"input_tokens_details":{"text_tokens":8},"output_tokens_details":{"text_tokens":0,"audio_tokens":32}}}}',
    "session.finished": '{"event_id":"event_ZAPsdN5wyqym4yAvGURU3","type":"session.finished"}',
    "error.short": '{"event_id":"event_QzAVZRVa9hKqM5VOaHunh","type":"error","error":{"code":"invalid_value","message":"Session update error: session already started or finished or failed."}}',
    "error.full": '{"event_id":"event_B2uoU7VOt1AAITsPRPH9n","type":"error","error":{"type":"invalid_request_error","code":"invalid_value","message":"bad","param":"session.voice","event_id":"event_123"}}',
}


@pytest.mark.parametrize("name", sorted(OBSERVED))
def test_observed_frames_round_trip(name: str) -> None:
    frame = OBSERVED[name]
    event = p.parse_server_event(frame)
    assert not isinstance(event, p.UnknownEvent)
    assert event.type == name.split(".short")[0].split(".full")[0]
    original = json.loads(frame)
    dumped = json.loads(p.dump_event(event))
    # Every field of the real frame survives, including unmodelled ones (item.output.usage).
    for key, value in original.items():
        assert dumped[key] == value


def test_typed_access_to_observed_values() -> None:
    done = p.parse_server_event(OBSERVED["response.done"])
    assert isinstance(done, p.ResponseDone)
    assert done.response.usage is not None and done.response.usage.characters == 25
    updated = p.parse_server_event(OBSERVED["session.updated"])
    assert isinstance(updated, p.SessionUpdated)
    assert (updated.session.mode, updated.session.sample_rate) == ("commit", 16000)
    error = p.parse_server_event(OBSERVED["error.full"])
    assert isinstance(error, p.ErrorEvent) and error.error.param == "session.voice"


def test_unknown_type_is_kept_not_fatal() -> None:
    event = p.parse_server_event('{"type":"response.text.delta","delta":"x"}')
    assert isinstance(event, p.UnknownEvent)
    assert event.raw["delta"] == "x"


@pytest.mark.parametrize(
    "frame",
    [b"\x00\x01", "not json", '["a"]', '{"no_type":1}', '{"type":"response.audio.delta","delta":"AA=="}'],
)
def test_broken_frames_are_protocol_violations(frame: str | bytes) -> None:
    with pytest.raises(ProtocolViolationError):
        p.parse_server_event(frame)


def test_client_events_match_the_sdk_shape() -> None:
    update = p.SessionUpdate(
        session=p.SessionConfig(voice="Cherry", mode="commit", response_format="pcm", sample_rate=16000, enable_tn=True)
    )
    data = json.loads(p.dump_event(update))
    assert data["type"] == "session.update"
    assert data["session"] == {
        "voice": "Cherry",
        "mode": "commit",
        "response_format": "pcm",
        "sample_rate": 16000,
        "enable_tn": True,
    }
    assert data["event_id"].startswith("event_") and len(data["event_id"]) == 6 + 21
    parsed = p.parse_client_event(p.dump_event(p.InputTextBufferAppend(text="你好")))
    assert isinstance(parsed, p.InputTextBufferAppend) and parsed.text == "你好"
    assert isinstance(p.parse_client_event('{"type":"conversation.item.create"}'), p.UnknownEvent)


def test_ids_are_unique_base62() -> None:
    ids = {p.new_id("resp") for _ in range(2000)}
    assert len(ids) == 2000
    assert all(i.startswith("resp_") and i[5:].isascii() and i[5:].isalnum() and len(i) == 26 for i in ids)
    # Every digit of every position is drawn: all 62 characters appear at the first and the last place.
    assert len({i[5] for i in ids}) == len({i[-1] for i in ids}) == 62
