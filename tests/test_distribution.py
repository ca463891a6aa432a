"""Distribution: uv's cache keys, the Claude Code plugin, the .mcpb bundle and the MCP Registry entry."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "skill" / "alicloud_tts_realtime"
BIN = Path(sys.executable).parent


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- uv -------------------------------------------------------------------------------------------


def test_every_packaged_file_is_a_uv_cache_key() -> None:
    # `uvx --from <folder>` rebuilds only when a cache key changes: a package file outside every key
    # would be served stale after an edit.
    uv = pyproject()["tool"]["uv"]  # type: ignore[index]
    patterns = [key["file"] for key in uv["cache-keys"]]
    assert "pyproject.toml" in patterns
    files = [
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc")
    ]
    assert files
    for path in files:
        relative = path.relative_to(ROOT)
        assert any(_match(relative, p) for p in patterns), f"{relative} is packaged but no uv cache key covers it"


def _match(path: Path, pattern: str) -> bool:
    """Glob match with ``**`` as uv reads cache keys (``PurePath.full_match`` needs Python 3.13)."""
    import fnmatch

    parts, globs = path.as_posix().split("/"), pattern.split("/")

    def walk(i: int, j: int) -> bool:
        if j == len(globs):
            return i == len(parts)
        if globs[j] == "**":
            return any(walk(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], globs[j]) and walk(i + 1, j + 1)

    return walk(0, 0)


# --- the Claude Code plugin -----------------------------------------------------------------------

PLUGIN_NAME = "alicloud-ai-audio-tts-realtime"
needs_plugin_folder = pytest.mark.skipif(
    not (ROOT / "plugin" / ".mcp.json").is_file(), reason="a checkout's plugin folder, not in the sdist"
)


def plugin_root() -> Path:
    marketplace = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text(encoding="utf-8"))
    (entry,) = marketplace["plugins"]
    assert entry["name"] == PLUGIN_NAME
    assert entry["version"] == pyproject()["project"]["version"]  # type: ignore[index]
    return (ROOT / entry["source"]).resolve()


def installed_copy(tmp_path: Path) -> Path:
    """The plugin as Claude Code caches it: the source folder copied with its links dereferenced."""
    copy = tmp_path / "cache" / PLUGIN_NAME / "0.1.0"
    shutil.copytree(plugin_root(), copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


@needs_plugin_folder
def test_the_plugin_declares_its_server_in_the_plugin_root_mcp_json() -> None:
    # Claude Code (2.1.197) does not load mcpServers written inline in .claude-plugin/plugin.json:
    # `claude plugin details` said "MCP servers (0)". It reads .mcp.json at the plugin root.
    root = plugin_root()
    manifest = json.loads((root / ".claude-plugin" / "plugin.json").read_text(encoding="utf-8"))
    assert "mcpServers" not in manifest
    assert "uv" in manifest["description"]  # the prerequisite shows where the plugin is installed
    servers = json.loads((root / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"]
    (entry,) = servers.values()
    assert entry["command"] == "sh" and entry["args"] == ["${CLAUDE_PLUGIN_ROOT}/bin/qwen-tts-mcp"]


@needs_plugin_folder
def test_the_plugin_folder_holds_the_package_and_skill_but_no_checkout_state(tmp_path: Path) -> None:
    # The marketplace source is the whole folder Claude Code copies into its cache: a checkout root
    # would bring its .venv (hundreds of MB), tests and output along.
    root = plugin_root()
    assert root != ROOT
    assert {p.name for p in root.iterdir()} == {
        ".claude-plugin",
        ".mcp.json",
        "bin",
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "skill",
        "skills",
    }
    copy = installed_copy(tmp_path)
    names = {p.relative_to(copy).parts[0] for p in copy.rglob("*")}
    assert not names & {".venv", "venv", "tests", "output", "benchmarks", ".git"}
    project = tomllib.loads((copy / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == PLUGIN_NAME and (copy / project["readme"]).is_file() and (copy / "LICENSE").is_file()
    assert (copy / "skill" / "alicloud_tts_realtime" / "mcp_server.py").is_file()
    assert (copy / "skills" / PLUGIN_NAME / "SKILL.md").read_bytes() == (ROOT / "SKILL.md").read_bytes()
    size = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
    assert size < 5_000_000, size


def fake_uvx(folder: Path, log: Path) -> Path:
    """A uvx on PATH that checks what the launcher asks for and runs this venv's server instead."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "uvx"
    server = shutil.which("alicloud-tts-realtime", path=str(BIN))
    assert server, "alicloud-tts-realtime is not installed in this venv"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, pathlib, sys\n"
        f"pathlib.Path({str(log)!r}).write_text(repr(sys.argv[1:]))\n"
        "assert sys.argv[1] == '--from' and sys.argv[2].endswith('[offline]'), sys.argv\n"
        "assert (pathlib.Path(sys.argv[2][: -len('[offline]')]) / 'pyproject.toml').is_file()\n"
        "assert sys.argv[3] == 'alicloud-tts-realtime', sys.argv\n"
        f"os.execv({server!r}, [{server!r}, *sys.argv[4:]])\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def substitute(value: str, plugin: Path, home: Path) -> str:
    return value.replace("${CLAUDE_PLUGIN_ROOT}", str(plugin)).replace("${HOME}", str(home))


@needs_plugin_folder
@pytest.mark.anyio
async def test_the_installed_plugin_starts_its_server_through_uvx(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    copy, home = installed_copy(tmp_path), tmp_path / "home"
    log = tmp_path / "uvx-args"
    fake_uvx(tmp_path / "bin", log)
    (entry,) = json.loads((copy / ".mcp.json").read_text(encoding="utf-8"))["mcpServers"].values()
    env = {k: substitute(v, copy, home) for k, v in entry["env"].items()}
    env.update({"HOME": str(home), "PATH": f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"})
    args = [substitute(a, copy, home) for a in entry["args"]]
    params = StdioServerParameters(command=entry["command"], args=args, env=env, cwd=tmp_path)
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("tts_realtime", {"text": "Installed.", "voice": "Cherry"})
    assert {"tts_realtime", "tts_voices"} <= tools
    assert ast.literal_eval(log.read_text()) == ["--from", f"{copy}[offline]", "alicloud-tts-realtime", "serve"]
    assert not result.is_error and result.structured_content is not None
    saved = Path(result.structured_content["file_path"])
    assert saved.is_file() and saved.is_relative_to(home / ".local" / "share" / PLUGIN_NAME)


@needs_plugin_folder
def test_the_plugin_launcher_finds_uv_where_its_installer_puts_it(tmp_path: Path) -> None:
    # Claude Code may start servers with a PATH that lacks ~/.local/bin (a macOS app from the Dock).
    home, log = tmp_path / "home", tmp_path / "uvx-args"
    fake_uvx(home / ".local" / "bin", log)
    launcher = installed_copy(tmp_path) / "bin" / "qwen-tts-mcp"
    done = subprocess.run(
        ["sh", str(launcher), "--help"],
        env={"HOME": str(home), "PATH": f"/usr/bin{os.pathsep}/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--transport" in done.stdout and ast.literal_eval(log.read_text())[-2:] == ["serve", "--help"]


@needs_plugin_folder
def test_the_plugin_launcher_without_uv_says_what_to_install(tmp_path: Path) -> None:
    if any(Path(d, "uvx").exists() for d in ("/usr/bin", "/bin", "/usr/local/bin", "/opt/homebrew/bin")):
        pytest.skip("uvx is installed system-wide on this machine")
    launcher = installed_copy(tmp_path) / "bin" / "qwen-tts-mcp"
    done = subprocess.run(
        ["sh", str(launcher)],
        env={"HOME": str(tmp_path), "PATH": f"/usr/bin{os.pathsep}/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 127
    assert done.stdout == ""  # stdout is the MCP channel
    assert "uv is not installed" in done.stderr and "https://docs.astral.sh/uv/" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- the MCP bundle (.mcpb) -----------------------------------------------------------------------

MCPB_PACKAGE = "@anthropic-ai/mcpb@2"  # the manifest's schema and the CLI that validates and packs bundles


def load_manifest() -> dict[str, Any]:
    data = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def mcpb() -> Path:
    """The @anthropic-ai/mcpb package, installed once into a folder of the temp dir that later runs reuse."""
    cache = Path(tempfile.gettempdir()) / "alicloud-tts-realtime-test-mcpb" / MCPB_PACKAGE.rsplit("@", 1)[1]
    package = cache / "node_modules" / "@anthropic-ai" / "mcpb"
    if not (package / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip("node and npm are needed to fetch @anthropic-ai/mcpb")
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent))  # installed aside, then moved in whole
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging), MCPB_PACKAGE],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"npm did not fetch {MCPB_PACKAGE} within 180 s (registry unreachable?)")
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = " ".join(done.stderr.strip().splitlines()[-2:])[:300]
            pytest.skip(f"npm could not fetch {MCPB_PACKAGE} (registry unreachable?): {tail}")
        try:
            staging.rename(cache)
        except OSError:  # another run got there first
            shutil.rmtree(staging, ignore_errors=True)
    assert (package / "package.json").is_file()
    return package


def run_mcpb(mcpb: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node
    cli = mcpb / "dist" / "cli" / "cli.js"
    return subprocess.run([node, str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_manifest_agrees_with_pyproject_and_the_server() -> None:
    manifest, project = load_manifest(), pyproject()["project"]  # type: ignore[index]
    assert manifest["manifest_version"] == "0.4"
    assert manifest["name"] == project["name"] and manifest["version"] == project["version"]
    assert manifest["server"]["type"] == "uv"  # the host installs the dependencies from pyproject.toml
    assert (ROOT / manifest["server"]["entry_point"]).is_file()
    from alicloud_tts_realtime.engines import ENGINE_CHOICES
    from alicloud_tts_realtime.mcp_server import ToolName

    listed = {ToolName.TTS_REALTIME.value, ToolName.TTS_VOICES.value, ToolName.TTS_STOP.value}  # not the dotted alias
    assert {tool["name"] for tool in manifest["tools"]} == listed
    config = manifest["user_config"]
    assert set(config) == {"api_key", "region", "output_dir", "engine"}
    assert config["api_key"]["sensitive"] is True
    assert config["output_dir"]["type"] == "directory"
    assert config["engine"]["default"] in ENGINE_CHOICES
    assert all(choice in config["engine"]["description"] for choice in ENGINE_CHOICES)
    env = manifest["server"]["mcp_config"]["env"]
    assert env["DASHSCOPE_API_KEY"] == "${user_config.api_key}"  # the key goes in the environment, never in args
    assert not any("api_key" in arg for arg in manifest["server"]["mcp_config"]["args"])
    # Claude Desktop hands an optional field nobody filled in over as the literal ${user_config.x}
    # unless it has a default; "" reads as unset.
    assert all("default" in option for option in config.values())


def test_the_manifest_matches_the_schema_of_the_mcpb_package(mcpb: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # a dependency of mcp

    manifest = load_manifest()
    name = f"mcpb-manifest-v{manifest['manifest_version']}.schema.json"
    schema_file = next(p for p in (mcpb / "schemas" / name, mcpb / "dist" / name) if p.is_file())
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert not errors, errors
    done = run_mcpb(mcpb, "validate", "manifest.json", cwd=ROOT)
    assert done.returncode == 0 and "validation passes" in done.stdout, done.stdout + done.stderr


def test_mcpb_pack_bundles_only_what_uv_needs(mcpb: Path, tmp_path: Path) -> None:
    import zipfile

    bundle = tmp_path / "qwen-tts.mcpb"
    done = run_mcpb(mcpb, "pack", str(ROOT), str(bundle), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = zipfile.ZipFile(bundle).namelist()
    assert {"manifest.json", "pyproject.toml", "README.md", "LICENSE", "skill/alicloud_tts_realtime/cli.py"} <= set(
        names
    )
    assert {name.split("/", 1)[0] for name in names} == {
        "manifest.json",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "skill",
    }
    assert not [n for n in names if "__pycache__" in n or ".egg-info" in n or n.endswith((".pyc", ".wav"))]
    packaged = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*") if p.is_file()}
    packaged = {n for n in packaged if "__pycache__" not in n and not n.endswith(".pyc")}
    assert packaged <= set(names)
    assert bundle.stat().st_size < 1_000_000


@pytest.mark.anyio
async def test_the_manifest_command_starts_the_server_with_the_defaults(tmp_path: Path) -> None:
    # What the host runs: `uv run --directory <bundle> --extra offline alicloud-tts-realtime serve ...`,
    # with ${user_config.*} replaced by the defaults. uv is not needed here: run what it would run.
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    manifest = load_manifest()
    config = manifest["server"]["mcp_config"]
    defaults = {f"${{user_config.{k}}}": str(v["default"]) for k, v in manifest["user_config"].items()}
    defaults.update({"${__dirname}": str(ROOT), "${DOCUMENTS}": str(tmp_path / "Documents")})

    def resolve(value: str) -> str:
        for variable, replacement in defaults.items():
            value = value.replace(variable, replacement)
        return value

    args = [resolve(a) for a in config["args"]]
    assert config["command"] == "uv" and args[:6] == [
        "run",
        "--directory",
        str(ROOT),
        "--extra",
        "offline",
        "alicloud-tts-realtime",
    ]
    server = shutil.which("alicloud-tts-realtime", path=str(BIN))
    assert server
    env = {k: resolve(v) for k, v in config["env"].items()}
    env.update({"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")})
    assert env["DASHSCOPE_API_KEY"] == ""
    params = StdioServerParameters(command=server, args=args[6:], env=env, cwd=tmp_path)
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("tts_realtime", {"text": "Bundled.", "voice": "Cherry"})
    assert tools == {tool["name"] for tool in manifest["tools"]}
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["engine"] == "offline"  # no key: the offline voice
    assert Path(result.structured_content["file_path"]).is_relative_to(tmp_path / "Documents" / "Qwen TTS")


# --- the MCP Registry entry (server.json) ---------------------------------------------------------

REGISTRY_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


def load_server_json() -> dict[str, Any]:
    data = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_server_json_agrees_with_pyproject() -> None:
    entry, project = load_server_json(), pyproject()["project"]  # type: ignore[index]
    assert entry["$schema"] == REGISTRY_SCHEMA
    assert entry["version"] == project["version"]
    (package,) = entry["packages"]
    assert package["registryType"] == "pypi" and package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == project["name"] and package["version"] == project["version"]
    assert package["runtimeHint"] == "uvx" and package["transport"] == {"type": "stdio"}
    # uvx runs the executable named like the package: the project must install one.
    assert project["scripts"][package["identifier"]] == project["scripts"]["alicloud-tts-realtime"]
    (source,) = package["runtimeArguments"]
    assert (source["name"], source["value"]) == ("--from", f"{project['name']}[offline]=={project['version']}")
    assert package["packageArguments"][0]["value"] == "serve"


def test_server_json_follows_the_registry_rules() -> None:
    import re

    entry = load_server_json()
    # The registry's own constraints (schema 2025-12-11 and its publishing rules).
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/[a-zA-Z0-9._-]+", entry["name"]) and len(entry["name"]) <= 200
    assert 1 <= len(entry["description"]) <= 100
    assert set(entry) <= {"$schema", "name", "description", "version", "title", "repository", "websiteUrl", "packages"}
    # PyPI ownership: the package's description (this README) names the server.
    markers = re.findall(r"mcp-name:\s*(\S+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert markers == [entry["name"]]
    (package,) = entry["packages"]
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert variables["DASHSCOPE_API_KEY"]["isSecret"] is True
    assert not any(v.get("isSecret") for name, v in variables.items() if name != "DASHSCOPE_API_KEY")
    assert all(v["description"] for v in variables.values())
    settings = (PACKAGE / "settings.py").read_text(encoding="utf-8")
    for name in variables:
        assert f'"{name}"' in settings, f"{name} is described in server.json but settings.py does not read it"
    from alicloud_tts_realtime.engines import ENGINE_CHOICES
    from alicloud_tts_realtime.settings import REGIONS

    assert set(variables["DASHSCOPE_REGION"]["choices"]) == set(REGIONS)
    (engine,) = [a for a in package["packageArguments"] if a.get("name") == "--engine"]
    assert tuple(engine["choices"]) == ENGINE_CHOICES
