"""The skill's face: SKILL.md and README commands run as written, manifests parse and start the server.

Fenced blocks whose info string contains ``runnable`` are executed: against an emulator (a key and
the emulator's URLs in the environment), and, when the info string also says ``offline``, once more
with no key at all (the embedded default).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ALLOWED_FRONTMATTER = {"name", "description", "license", "metadata"}


def frontmatter(path: Path) -> tuple[dict[str, object], str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data, body


def runnable_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(language, body, also_offline) of every block marked runnable."""
    blocks = []
    for match in FENCE.finditer(path.read_text(encoding="utf-8")):
        words = match["info"].split()
        if "runnable" in words:
            blocks.append((words[0], match["body"], "offline" in words))
    return blocks


def project_name() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"])


# --- SKILL.md against the Agent Skills rules -------------------------------------------------------


def test_skill_frontmatter_follows_the_agent_skills_rules() -> None:
    data, body = frontmatter(ROOT / "SKILL.md")
    assert set(data) == ALLOWED_FRONTMATTER
    name = data["name"]
    assert isinstance(name, str) and NAME.match(name) and len(name) <= 64
    # The folder a catalog installs the skill into is named after it, as are the package and plugin.
    assert name == project_name()
    description = data["description"]
    assert isinstance(description, str) and 0 < len(description) <= 1024
    assert "<" not in description and ">" not in description
    metadata = data["metadata"]
    assert isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    assert metadata["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert len(body.splitlines()) < 500


def test_skill_names_the_exact_models_and_relative_paths() -> None:
    text = (ROOT / "SKILL.md").read_text(encoding="utf-8")
    for model in (
        "qwen3-tts-flash-realtime",
        "qwen3-tts-instruct-flash-realtime",
        "qwen3-tts-instruct-flash-realtime-2026-01-22",
    ):
        assert f"`{model}" in text
    for relative in re.findall(r"`((?:scripts|references)/[\w./-]+)`", text):
        assert (ROOT / relative).exists(), relative
    assert "/work/" not in text and "/home/" not in text


# --- runnable commands ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("docs-home")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "ALIBABA", "ALICLOUD"))}
    base.update({"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}"})
    process = subprocess.Popen(
        [sys.executable, "-m", "alicloud_tts_realtime", "emulator", "--port", "0", "--audio", "signal"],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[-1]
        http = url.replace("ws://", "http://").replace("/api-ws/v1/realtime", "/api/v1")
        yield {
            **base,
            "DASHSCOPE_API_KEY": "sk-emulator",
            "DASHSCOPE_REALTIME_URL": url,
            "DASHSCOPE_HTTP_BASE_URL": http,
        }
    finally:
        process.terminate()
        process.communicate(timeout=10)


def run_block(language: str, body: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The skill's paths are relative to its folder: give the commands a copy-like folder to run in.
    for entry in ("scripts", "skill", "references", "SKILL.md"):
        if not (cwd / entry).exists():
            (cwd / entry).symlink_to(ROOT / entry)
    command = ["bash", "-euo", "pipefail", "-c", body] if language == "bash" else [sys.executable, "-c", body]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


DOCS = {
    f"{doc}:{i}:{language}": (language, body, offline)
    for doc in ("SKILL.md", "README.md")
    for i, (language, body, offline) in enumerate(runnable_blocks(ROOT / doc))
}


def test_there_are_runnable_blocks_in_both_documents() -> None:
    assert any(key.startswith("SKILL.md") for key in DOCS) and any(key.startswith("README.md") for key in DOCS)
    assert any(offline for _, _, offline in DOCS.values())


@pytest.mark.parametrize("key", sorted(DOCS))
def test_documented_commands_run_against_the_emulator(key: str, emulator_env: dict[str, str], tmp_path: Path) -> None:
    language, body, _ = DOCS[key]
    done = run_block(language, body, {**emulator_env, "OUTPUT_DIR": str(tmp_path / "out")}, tmp_path)
    assert done.returncode == 0, f"{key} failed:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", sorted(k for k, v in DOCS.items() if v[2]))
def test_documented_commands_run_offline_without_a_key(key: str, emulator_env: dict[str, str], tmp_path: Path) -> None:
    language, body, _ = DOCS[key]
    env = {k: v for k, v in emulator_env.items() if not k.startswith("DASHSCOPE_")}
    done = run_block(language, body, {**env, "OUTPUT_DIR": str(tmp_path / "out")}, tmp_path)
    assert done.returncode == 0, f"{key} failed offline:\n{done.stderr}"
    assert "offline" in done.stdout + done.stderr


# --- install paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("document", ["SKILL.md", "README.md"])
def test_inline_commands_parse(document: str) -> None:
    """Every inline `alicloud-tts-realtime ...` in the prose names real subcommands and flags."""
    import shlex

    from alicloud_tts_realtime.cli import _build_parser

    text = (ROOT / document).read_text(encoding="utf-8")
    commands = re.findall(r"`alicloud-tts-realtime ([^`]*)`", text)
    assert commands
    for command in commands:
        argv = shlex.split(command.replace("…", "hello"))
        try:
            _build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{document}: `alicloud-tts-realtime {command}` does not parse (exit {exc.code})")


def test_plugin_marketplace_and_catalog_files() -> None:
    marketplace = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    name = project_name()
    assert [p["name"] for p in marketplace["plugins"]] == [name]
    manifest = ROOT / marketplace["plugins"][0]["source"] / ".claude-plugin" / "plugin.json"
    if manifest.is_file():  # the plugin folder is a checkout's (links), not in the sdist
        plugin = json.loads(manifest.read_text())
        assert plugin["name"] == name and NAME.match(plugin["name"])
        assert plugin["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    catalog = yaml.safe_load((ROOT / "agents" / "openai.yaml").read_text())
    interface = catalog["interface"]
    assert set(interface) == {"display_name", "short_description", "default_prompt"}
    assert 25 <= len(interface["short_description"]) <= 64
    assert f"${name}" in interface["default_prompt"]


@pytest.mark.skipif(not (ROOT / "skills").is_dir(), reason="a checkout's plugin layout, not in the sdist")
def test_the_plugin_finds_the_skill_with_its_files() -> None:
    # Claude Code loads a plugin's skills from skills/<name>/SKILL.md; the entries there link to the
    # top-level files, so the paths SKILL.md names resolve from the plugin's skill folder too.
    (folder,) = (ROOT / "skills").iterdir()
    data, _ = frontmatter(folder / "SKILL.md")
    assert folder.name == data["name"] == project_name()
    assert (folder / "SKILL.md").read_bytes() == (ROOT / "SKILL.md").read_bytes()
    text = (ROOT / "SKILL.md").read_text(encoding="utf-8")
    for relative in re.findall(r"`((?:scripts|references)/[\w./-]+)`", text):
        assert (folder / relative).exists(), relative


@pytest.mark.skipif(not (ROOT / "skills").is_dir(), reason="a checkout's plugin layout, not in the sdist")
def test_a_copy_of_the_plugin_skill_folder_alone_is_a_whole_project(tmp_path: Path) -> None:
    # A catalog may copy skills/<name>/ alone, links dereferenced: SKILL.md's install command
    # (pip install -e ".[offline]" in that folder) and the probe's skill/ import must still work.
    (folder,) = (ROOT / "skills").iterdir()
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # follows links
    assert not any(path.is_symlink() for path in copy.rglob("*"))
    project = tomllib.loads((copy / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == project_name()
    assert (copy / project["project"]["readme"]).is_file() and (copy / "LICENSE").is_file()
    for where in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert (copy / where / "alicloud_tts_realtime" / "__init__.py").is_file()
    assert (copy / "scripts" / "realtime_tts_demo.py").is_file()
    assert 'pip install -e ".[offline]"' in (copy / "SKILL.md").read_text(encoding="utf-8")


def server_command(entry: dict[str, object]) -> list[str]:
    """The command of an MCP server entry, made runnable here."""
    command, args = str(entry["command"]), [str(a) for a in entry["args"]]  # type: ignore[attr-defined]
    resolved = shutil.which(command, path=str(BIN)) or shutil.which(command)
    assert resolved, command
    return [resolved, *args]


# The plugin's server (plugin/.mcp.json, through its uv launcher) is started in test_distribution.py.
@pytest.mark.anyio
@pytest.mark.parametrize("config", ["examples/.mcp.json"])
async def test_mcp_configs_start_the_server(config: str, tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    (entry,) = json.loads((ROOT / config).read_text())["mcpServers"].values()
    command = server_command(entry)
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), "OUTPUT_DIR": str(tmp_path / "out")}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=tmp_path)
    async with Client(params) as client:
        tools = await client.list_tools()
        assert "tts_realtime" in {tool.name for tool in tools.tools}
        result = await client.call_tool("tts_realtime", {"text": "Installed.", "voice": "Cherry"})
    assert not result.is_error and result.structured_content is not None
    assert Path(result.structured_content["file_path"]).is_file()


def test_wheel_and_sdist_contents(tmp_path: Path) -> None:
    import tarfile
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    (sdist,) = tmp_path.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "alicloud_tts_realtime/__init__.py",
        "alicloud_tts_realtime/py.typed",
        "alicloud_tts_realtime/emulator/server.py",
        "alicloud_tts_realtime/engines/offline.py",
        "alicloud_tts_realtime/mcp_server.py",
    ):
        assert required in names
    assert not [n for n in names if n.startswith(("tests/", "output/", "scripts/")) or n.endswith(".wav")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "alicloud-tts-realtime = alicloud_tts_realtime.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/pyproject.toml") for m in members)
    top = {m.split("/", 1)[1] for m in members if "/" in m}
    for needed in (
        "SKILL.md",
        "LICENSE",
        "scripts/realtime_tts_demo.py",
        "tests/conftest.py",
        "tests/speech_features.py",
    ):
        assert needed in top, needed  # the sdist is the whole skill, and its tests can run
    assert not [m for m in members if "/output/" in m or m.endswith(".wav") or "/.venv/" in m]
