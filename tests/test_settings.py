from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from alicloud_tts_realtime import ConfigurationError, load_settings
from alicloud_tts_realtime.settings import Settings

SECRET = "sk-test-0123456789abcdef"


def write_credentials(home: Path, text: str) -> Path:
    path = home / ".alibabacloud" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_env_key_wins_over_file(tmp_path: Path) -> None:
    write_credentials(tmp_path, "[default]\ndashscope_api_key = sk-from-file\n")
    settings = load_settings({"DASHSCOPE_API_KEY": SECRET}, home=tmp_path)
    assert settings.bearer() == f"Bearer {SECRET}"
    assert settings.key_source == "env DASHSCOPE_API_KEY"


def test_key_from_profile_among_access_key_profiles(tmp_path: Path) -> None:
    write_credentials(
        tmp_path,
        "[default]\ntype = access_key\naccess_key_id = AK\naccess_key_secret = SK\n\n"
        "[work]\ntype = access_key\ndashscope_api_key = sk-work\n\n[other]\nDASHSCOPE_API_KEY = sk-other\n",
    )
    assert load_settings({}, home=tmp_path).api_key is None  # default profile has no DashScope key
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "work"}, home=tmp_path).bearer() == "Bearer sk-work"
    # ALICLOUD_PROFILE is the fallback; the upper-case key name is accepted too.
    assert load_settings({"ALICLOUD_PROFILE": "other"}, home=tmp_path).bearer() == "Bearer sk-other"
    both = {"ALIBABA_CLOUD_PROFILE": "work", "ALICLOUD_PROFILE": "other"}
    assert load_settings(both, home=tmp_path).bearer() == "Bearer sk-work"


def test_malformed_credentials_is_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, f"dashscope_api_key = {SECRET}\n[default\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings({}, home=tmp_path)
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_file_means_no_key(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path)
    assert not settings.has_key
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY"):
        settings.bearer()


def test_key_never_shows_in_repr_or_str(tmp_path: Path) -> None:
    settings = load_settings({"DASHSCOPE_API_KEY": SECRET}, home=tmp_path)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_regions_and_overrides(tmp_path: Path) -> None:
    beijing = load_settings({}, home=tmp_path)
    assert beijing.realtime_url == "wss://dashscope.aliyuncs.com/api-ws/v1/realtime"
    assert beijing.http_base_url == "https://dashscope.aliyuncs.com/api/v1"
    intl = load_settings({"DASHSCOPE_REGION": "ap-southeast-1", "DASHSCOPE_WORKSPACE": "ws-1"}, home=tmp_path)
    assert intl.realtime_url == "wss://dashscope-intl.aliyuncs.com/api-ws/v1/realtime"
    assert intl.workspace == "ws-1"
    local = load_settings(
        {
            "DASHSCOPE_REALTIME_URL": "ws://127.0.0.1:9/api-ws/v1/realtime",
            "DASHSCOPE_HTTP_BASE_URL": "http://127.0.0.1:9/api/v1/",
            "OUTPUT_DIR": str(tmp_path / "out"),
        },
        home=tmp_path,
    )
    assert local.realtime_url == "ws://127.0.0.1:9/api-ws/v1/realtime"
    assert local.http_base_url == "http://127.0.0.1:9/api/v1"
    assert local.audio_dir == tmp_path / "out" / "ai-audio-tts-realtime" / "audio"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHSCOPE_REGION": "us-west-9"}, "DASHSCOPE_REGION"),
        ({"DASHSCOPE_REALTIME_URL": "http://x/api-ws/v1/realtime"}, "DASHSCOPE_REALTIME_URL"),
        ({"DASHSCOPE_HTTP_BASE_URL": "ftp://x"}, "DASHSCOPE_HTTP_BASE_URL"),
        ({"DASHSCOPE_REALTIME_URL": "ws://127.0.0.1:99999/x"}, "DASHSCOPE_REALTIME_URL .*Port out of range"),
        ({"DASHSCOPE_HTTP_BASE_URL": "http://[::1"}, "DASHSCOPE_HTTP_BASE_URL .*IPv6"),
        ({"DASHSCOPE_HTTP_BASE_URL": "http://:80/api/v1"}, "DASHSCOPE_HTTP_BASE_URL"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env, home=tmp_path)


def test_duplicate_sections_and_options_are_tolerated_last_value_wins(tmp_path: Path) -> None:
    write_credentials(
        tmp_path,
        "[default]\naccess_key_id = AK\naccess_key_id = AK2\n\n[prod]\ndashscope_api_key = sk-old\n\n"
        "[default]\ntype = access_key\n\n[prod]\ndashscope_api_key = sk-new\n",
    )
    assert load_settings({}, home=tmp_path).api_key is None
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "prod"}, home=tmp_path).bearer() == "Bearer sk-new"


def test_lower_case_key_name_takes_precedence_over_upper_case(tmp_path: Path) -> None:
    write_credentials(
        tmp_path,
        "[both]\nDASHSCOPE_API_KEY = sk-upper\ndashscope_api_key = sk-lower\n\n"
        "[blank]\ndashscope_api_key =\nDASHSCOPE_API_KEY = sk-upper\n",
    )
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "both"}, home=tmp_path).bearer() == "Bearer sk-lower"
    # A blank dashscope_api_key does not hide DASHSCOPE_API_KEY.
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "blank"}, home=tmp_path).bearer() == "Bearer sk-upper"


def test_default_named_section_is_an_ordinary_profile(tmp_path: Path) -> None:
    write_credentials(tmp_path, "[DEFAULT]\ndashscope_api_key = sk-upper-default\n\n[prod]\ntype = access_key\n")
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "prod"}, home=tmp_path).api_key is None  # no leaking
    assert load_settings({"ALICLOUD_PROFILE": "DEFAULT"}, home=tmp_path).bearer() == "Bearer sk-upper-default"


def test_utf8_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / ".alibabacloud" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf[default]\r\ndashscope_api_key = " + SECRET.encode() + b"\r\n")
    assert load_settings({}, home=tmp_path).bearer() == f"Bearer {SECRET}"


def test_parse_error_names_file_line_and_section_but_not_the_text(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, f"[default]\ntype = access_key\n\n[prod]\n{SECRET}\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings({}, home=tmp_path)
    message = str(info.value)
    assert str(path) in message and "line 5" in message and "[prod]" in message
    assert SECRET not in message


def test_missing_section_header_names_line_one(tmp_path: Path) -> None:
    write_credentials(tmp_path, f"dashscope_api_key = {SECRET}\n")
    with pytest.raises(ConfigurationError, match=r"line 1 .*MissingSectionHeaderError") as info:
        load_settings({}, home=tmp_path)
    assert SECRET not in str(info.value)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / ".alibabacloud" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[default]\ndashscope_api_key = sk-\xff\xfe\n")
    with pytest.raises(ConfigurationError, match="line 2 is not UTF-8") as info:
        load_settings({}, home=tmp_path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("variable", ["ALIBABA_CLOUD_PROFILE", "ALICLOUD_PROFILE"])
def test_selected_profile_missing_from_file_is_an_error(tmp_path: Path, variable: str) -> None:
    path = write_credentials(tmp_path, f"[default]\ntype = access_key\n\n[prod]\ndashscope_api_key = {SECRET}\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings({variable: "prdo"}, home=tmp_path)
    assert str(info.value) == f"Profile 'prdo' (from {variable}) is not in {path}; its sections are: default, prod."
    assert SECRET not in str(info.value)


def test_missing_profile_is_not_an_error_when_env_key_is_set_or_not_selected(tmp_path: Path) -> None:
    write_credentials(tmp_path, "[prod]\ndashscope_api_key = sk-prod\n")
    env = {"DASHSCOPE_API_KEY": SECRET, "ALIBABA_CLOUD_PROFILE": "prdo"}
    assert load_settings(env, home=tmp_path).bearer() == f"Bearer {SECRET}"
    assert load_settings({}, home=tmp_path).api_key is None  # no [default]: no key, offline in auto mode
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "  "}, home=tmp_path).api_key is None  # blank: default
    # No file at all: a selected profile is not an error either.
    assert load_settings({"ALIBABA_CLOUD_PROFILE": "prod"}, home=tmp_path / "elsewhere").api_key is None


def test_env_key_wins_without_reading_a_malformed_file(tmp_path: Path) -> None:
    write_credentials(tmp_path, "not an ini file\n")
    assert load_settings({"DASHSCOPE_API_KEY": SECRET}, home=tmp_path).bearer() == f"Bearer {SECRET}"


def test_output_dir_expands_tilde(tmp_path: Path) -> None:
    assert load_settings({"OUTPUT_DIR": "~/tts-out"}, home=tmp_path).output_dir == tmp_path / "tts-out"
    assert load_settings({"OUTPUT_DIR": "~"}, home=tmp_path).output_dir == tmp_path
    assert load_settings({}, home=tmp_path).output_dir == Path("output")


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("sk-live\u200bSECRET", "ZERO WIDTH SPACE at position 8"),
        ("sk\uff0dliveSECRET", "FULLWIDTH HYPHEN-MINUS at position 3"),
    ],
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_without_quoting_it(
    tmp_path: Path, key: str, named: str
) -> None:
    # Sent as is, websockets' error would quote the whole Authorization header (the key) in its message.
    with pytest.raises(ConfigurationError, match=f"The API key from env DASHSCOPE_API_KEY contains .*{named}") as info:
        load_settings({"DASHSCOPE_API_KEY": key}, home=tmp_path)
    assert "SECRET" not in str(info.value)
    with pytest.raises(ConfigurationError, match="The API key contains") as direct:
        Settings(api_key=SecretStr(key))  # library callers get the same check
    assert "SECRET" not in str(direct.value)
    with pytest.raises(ConfigurationError, match="DASHSCOPE_WORKSPACE contains"):
        load_settings({"DASHSCOPE_API_KEY": "sk-fine", "DASHSCOPE_WORKSPACE": "ws 1"}, home=tmp_path)


def test_max_segment_chars(tmp_path: Path) -> None:
    assert load_settings({}, home=tmp_path).max_segment_chars == 300
    assert load_settings({"DASHSCOPE_MAX_SEGMENT_CHARS": " 600 "}, home=tmp_path).max_segment_chars == 600
    for bad in ("0", "-5", "3.5", "many"):
        with pytest.raises(ConfigurationError, match="DASHSCOPE_MAX_SEGMENT_CHARS must be a positive whole number"):
            load_settings({"DASHSCOPE_MAX_SEGMENT_CHARS": bad}, home=tmp_path)
