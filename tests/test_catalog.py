from __future__ import annotations

import pytest

from alicloud_tts_realtime import InvalidRequestError, SpeechRequest, build_request, catalog


def test_seed_models_and_snapshots_are_known() -> None:
    for model in (
        "qwen3-tts-flash-realtime",
        "qwen3-tts-instruct-flash-realtime",
        "qwen3-tts-instruct-flash-realtime-2026-01-22",
        "qwen3-tts-flash-realtime-2025-11-27",
        "qwen3-tts-flash-realtime-2025-09-18",
    ):
        assert catalog.model_info(model).id == model


def test_voice_sets_follow_the_protocol_document() -> None:
    assert len(catalog.voices_for("qwen3-tts-flash-realtime")) == 49
    assert len(catalog.voices_for("qwen3-tts-flash-realtime-2025-09-18")) == 17
    assert len(catalog.voices_for("qwen3-tts-instruct-flash-realtime")) == 24
    assert catalog.voices_for("qwen-tts-realtime") == ("Cherry", "Serena", "Ethan", "Chelsie")
    assert "Eldric Sage" in catalog.voices_for("qwen3-tts-flash-realtime")


def test_default_model_depends_on_instruction() -> None:
    assert build_request(text="hi", voice="Cherry").model == "qwen3-tts-flash-realtime"
    assert build_request(text="hi", voice="Cherry", instruction="calm").model == "qwen3-tts-instruct-flash-realtime"
    # A blank instruction is no instruction.
    assert build_request(text="hi", voice="Cherry", instruction="  ").model == "qwen3-tts-flash-realtime"


def test_instruction_on_a_model_without_it_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="does not accept an instruction") as info:
        build_request(text="hi", voice="Cherry", instruction="calm", model="qwen3-tts-flash-realtime")
    assert info.value.field == "instruction"


def test_unknown_voice_names_the_closest() -> None:
    with pytest.raises(InvalidRequestError, match="'Cherry'") as info:
        build_request(text="hi", voice="Chery")
    assert info.value.field == "voice"
    # Voices of the flash family are not all on the instruct family.
    with pytest.raises(InvalidRequestError, match="not available on 'qwen3-tts-instruct-flash-realtime'"):
        build_request(text="hi", voice="Dylan", instruction="calm", model="qwen3-tts-instruct-flash-realtime")


def test_voice_case_is_corrected_and_custom_ids_only_on_vc_vd() -> None:
    assert build_request(text="hi", voice="cherry").voice == "Cherry"
    assert build_request(text="hi", voice="qwen-tts-vc-abc", model="qwen3-tts-vc-realtime-2026-01-15").voice
    with pytest.raises(InvalidRequestError, match="Custom"):
        build_request(text="hi", voice="qwen-tts-vc-abc")
    # ... and those models take nothing else: a system voice would be a paid call the service refuses.
    with pytest.raises(InvalidRequestError, match="only with voice ids cloned or designed for it"):
        build_request(text="hi", voice="Cherry", model="qwen3-tts-vc-realtime-2026-01-15")


def test_a_voice_the_instruction_ruled_out_says_so() -> None:
    with pytest.raises(InvalidRequestError, match="the instruction selected 'qwen3-tts-instruct-flash-realtime'"):
        build_request(text="hi", voice="dylan", instruction="calm")
    with pytest.raises(InvalidRequestError, match="not available") as info:  # not a flash voice either
        build_request(text="hi", voice="Dylanx", instruction="calm")
    assert "instruction selected" not in str(info.value)


def test_unknown_model_suggests_and_http_models_are_explained() -> None:
    with pytest.raises(InvalidRequestError, match="qwen3-tts-flash-realtime"):
        build_request(text="hi", voice="Cherry", model="qwen3-tts-flash-realtim")
    with pytest.raises(InvalidRequestError, match="HTTP-only"):
        build_request(text="hi", voice="Cherry", model="qwen3-tts-flash")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": "   ", "voice": "Cherry"}, "text"),
        ({"text": "", "voice": "Cherry"}, "text"),
        ({"text": "hi", "voice": "Cherry", "sample_rate": 22050}, "sample_rate"),
        ({"text": "hi", "voice": "Cherry", "language_type": "Klingon"}, "language_type"),
        ({"text": "hi", "voice": "Cherry", "sample_rate": 16000, "model": "qwen-tts-realtime"}, "sample_rate"),
        ({"text": "hi", "voice": "Cherry", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_requests_fail_before_any_call(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_request(**fields)
    assert info.value.field == field


def test_language_type_is_normalized() -> None:
    assert build_request(text="hi", voice="Cherry", language_type="english").language_type == "English"


def test_request_schema_describes_fields_for_a_model() -> None:
    schema = SpeechRequest.model_json_schema()
    for name in ("text", "voice", "instruction", "sample_rate", "model"):
        assert schema["properties"][name]["description"]
    assert schema["required"] == ["text", "voice"]


def test_future_dated_snapshots_of_known_families_are_accepted() -> None:
    request = build_request(
        text="hi", voice="Serena", instruction="calm", model="qwen3-tts-instruct-flash-realtime-2027-02-01"
    )
    assert request.model == "qwen3-tts-instruct-flash-realtime-2027-02-01"
    with pytest.raises(InvalidRequestError, match="not available"):
        build_request(text="hi", voice="Dylan", model="qwen3-tts-instruct-flash-realtime-2027-02-01")
    with pytest.raises(InvalidRequestError, match="Unknown realtime model"):
        build_request(text="hi", voice="Cherry", model="qwen9-tts-realtime-2027-02-01")
