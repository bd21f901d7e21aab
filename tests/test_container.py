"""The container image (Dockerfile, .dockerignore, docker-compose.azurite.yml) checked against the project.

No Docker engine runs where the tests run, so the image is never built here. Instead each claim
the files make about the project is checked against the project itself: the base image's Python
against requires-python, the entry point against [project.scripts] and the CLI's own parser, the
ports against each other, the health probe against the app's routes (and run against a live app),
every FLEET_ARTIFACTS_* variable against the settings loader, the compose environment by loading
it, and the files for secrets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with litestar; it ships no type hints
from litestar.routes import HTTPRoute
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleet_artifacts import cli
from fleet_artifacts.app import create_app
from fleet_artifacts.settings import CLIENT_VARIABLES, PREFIX, Settings, load_settings
from tests.helpers import clean_env
from tests.servers import AZURITE_KEY, REPO, ThreadedServer

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.azurite.yml"
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
SERVICE = "fleet-artifacts"  # the compose service that runs the image
# Published, dev-only values the files may hold: Azurite's well-known account (implied by
# UseDevelopmentStorage=true, or spelled out with its key) and the compose file's dev token.
AZURITE_CONNECTION_STRINGS = {
    "UseDevelopmentStorage=true",
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
}
DEV_TOKEN_PREFIX = "dev-token-"


class Instruction(NamedTuple):
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """A Dockerfile's instructions: comments dropped (inside continuations too), continuations joined."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    return found


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON) instruction; shell form is refused (no shell to signal)."""
    assert args.startswith("["), f"not in exec form: {args}"
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def pairs(args: str) -> dict[str, str]:
    """The key=value pairs of an ENV or LABEL instruction."""
    return dict(item.split("=", 1) for item in shlex.split(args))


@dataclass(frozen=True)
class Image:
    bases: list[str]  # each stage's FROM, build arguments resolved
    final: list[Instruction]  # the last stage's instructions (FROM excluded)

    def every(self, keyword: str) -> list[str]:
        return [i.args for i in self.final if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.every(keyword)
        return args

    def last(self, keyword: str) -> int:
        return max(n for n, i in enumerate(self.final) if i.keyword == keyword)

    @property
    def env(self) -> dict[str, str]:
        return {k: v for args in self.every("ENV") for k, v in pairs(args).items()}

    @property
    def argv(self) -> list[str]:
        return exec_form(self.one("ENTRYPOINT")) + exec_form(self.one("CMD"))

    @property
    def healthcheck(self) -> list[str]:
        options, _, command = self.one("HEALTHCHECK").partition("CMD ")
        assert all(o.startswith("--") for o in options.split()), options
        return exec_form(command.strip())

    @property
    def port(self) -> int:
        (port,) = self.one("EXPOSE").split()
        return int(port.removesuffix("/tcp"))


def parse_image(text: str) -> Image:
    args: dict[str, str] = {}
    bases: list[str] = []
    stage: list[Instruction] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and not bases:  # global: usable in FROM lines
            name, _, default = instruction.args.partition("=")
            args[name] = default
        elif instruction.keyword == "FROM":
            image = instruction.args.split()[0]
            bases.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image))
            stage = []
        else:
            stage.append(instruction)
    return Image(bases, stage)


IMAGE = parse_image(DOCKERFILE.read_text())
COMPOSE_DOC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str) -> str:
    """A compose value as compose resolves it with nothing exported (a required one: a placeholder)."""

    def resolve(m: re.Match[str]) -> str:
        operator, word = m.group(2) or "", m.group(3) or ""
        return word if operator.endswith("-") else "placeholder-from-the-user" if operator else ""

    return re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", resolve, value)


def compose_env() -> dict[str, str]:
    environment = COMPOSE_DOC["services"][SERVICE]["environment"]
    assert isinstance(environment, dict), "environment: a mapping, so each value can be read"
    return {str(k): str(v) for k, v in environment.items()}


def test_base_image_python_satisfies_requires_python() -> None:
    assert len(set(IMAGE.bases)) == 1, f"the venv is built for one interpreter: {IMAGE.bases}"
    match = re.fullmatch(
        r"(?:docker\.io/(?:library/)?)?python:(\d+)\.(\d+)(?:\.\d+)?-slim[\w.-]*", IMAGE.bases[0]
    )
    assert match, f"an official slim Python image, tagged with its version: {IMAGE.bases[0]}"
    python = Version(f"{match[1]}.{match[2]}")
    assert python in SpecifierSet(PYPROJECT["project"]["requires-python"])
    # The version mypy and ruff check the code for is the one the image runs.
    assert str(python) == PYPROJECT["tool"]["mypy"]["python_version"]


def test_final_stage_holds_the_venv_only() -> None:
    copies = IMAGE.every("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "sources and wheels stay in the builder"
    for run in IMAGE.every("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", run), (
            f"a build step in the final stage: {run}"
        )
    assert IMAGE.env["PATH"].startswith("/opt/venv/bin:")


def test_entrypoint_is_the_projects_command_serving_on_the_exposed_port() -> None:
    command, *argv = IMAGE.argv
    assert command in PYPROJECT["project"]["scripts"]
    args = cli._parser().parse_args(argv)  # the real CLI's parser: the flags exist, the values parse
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", IMAGE.port)


def test_healthcheck_asks_a_route_the_app_serves_on_the_exposed_port(tmp_path: Path) -> None:
    interpreter, flag, code = IMAGE.healthcheck
    assert (interpreter, flag) == ("python", "-c"), "no curl or wget in the image: Python probes"
    (url,) = re.findall(r"https?://[^'\"\s]+", code)
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("127.0.0.1", IMAGE.port)
    app = create_app(
        load_settings({f"{PREFIX}TOKENS": "probe-token-0123456789:acme", f"{PREFIX}DATA_DIR": str(tmp_path)})
    )
    paths = {route.path for route in app.routes if isinstance(route, HTTPRoute) and "GET" in route.methods}
    assert parts.path == "/health" and parts.path in paths


@pytest.mark.parametrize(
    ("allowed", "probe_sees", "healthy"),
    [
        (None, None, True),  # loopback names only: the probe says localhost
        ("artifacts.example.com", "artifacts.example.com", True),
        ("*.example.com,localhost", "*.example.com,localhost", True),
        ("*", "*", True),
        ("artifacts.example.com", "other.example.com", False),  # a 400 is a failed probe
    ],
)
def test_healthcheck_probe_passes_the_trusted_hosts_check(
    tmp_path: Path, allowed: str | None, probe_sees: str | None, healthy: bool
) -> None:
    env = {f"{PREFIX}TOKENS": "probe-token-0123456789:acme", f"{PREFIX}DATA_DIR": str(tmp_path)}
    if allowed is not None:
        env[f"{PREFIX}ALLOWED_HOSTS"] = allowed
    server = ThreadedServer(create_app(load_settings(env))).start()
    try:
        code = IMAGE.healthcheck[2]
        assert code.count(f":{IMAGE.port}/") == 1
        probe_env = clean_env() | {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
        if probe_sees is not None:
            probe_env[f"{PREFIX}ALLOWED_HOSTS"] = probe_sees
        probe = subprocess.run(
            [sys.executable, "-c", code.replace(f":{IMAGE.port}/", f":{server.port}/")],
            env=probe_env,
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        server.stop()
    assert (probe.returncode == 0) == healthy, probe.stderr.decode(errors="replace")
    assert healthy or b"HTTP Error 400" in probe.stderr, "refused by the service, not by a proxy"


def test_runs_as_a_fixed_non_root_user_owning_the_data_volume() -> None:
    user = IMAGE.one("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0, user
    assert IMAGE.last("USER") < min(IMAGE.last(k) for k in ("HEALTHCHECK", "ENTRYPOINT", "CMD"))
    data_dir = IMAGE.env[f"{PREFIX}DATA_DIR"]
    assert exec_form(IMAGE.one("VOLUME")) == [data_dir] and IMAGE.one("WORKDIR").startswith("/")
    runs = " ".join(IMAGE.every("RUN"))
    assert f"--uid {uid} --gid {gid}" in runs, "a passwd entry for the uid"
    assert re.search(rf"install -d -o {uid} -g {gid} -m 0?700 {re.escape(data_dir)}\b", runs)
    assert IMAGE.env["PYTHONDONTWRITEBYTECODE"] == "1" and IMAGE.env["PYTHONUNBUFFERED"] == "1"
    labels = {k: v for args in IMAGE.every("LABEL") for k, v in pairs(args).items()}
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]


def test_every_fleet_variable_named_is_one_the_settings_know() -> None:
    known = {PREFIX + name.upper() for name in Settings.__struct_fields__} | CLIENT_VARIABLES
    for path in (DOCKERFILE, COMPOSE):
        named = set(re.findall(rf"\b{PREFIX}[A-Z0-9_]+", path.read_text()))
        assert named and named <= known, f"{path.name}: {sorted(named - known)}"


def test_the_image_alone_refuses_to_serve_on_all_interfaces(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """What the README tells a user: set PUBLIC_BASE_URL or ALLOWED_HOSTS, or it will not start."""
    for name in [name for name in os.environ if name.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in (IMAGE.env | {f"{PREFIX}DATA_DIR": str(tmp_path)}).items():
        monkeypatch.setenv(name, value)
    assert cli.main(IMAGE.argv[1:]) == 2
    assert f"{PREFIX}ALLOWED_HOSTS" in capsys.readouterr().err


def test_compose_builds_the_image_and_its_environment_loads() -> None:
    service = COMPOSE_DOC["services"][SERVICE]
    build = service["build"]
    assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert "command" not in service and "entrypoint" not in service, "the image's own command runs"
    data_dir = IMAGE.env[f"{PREFIX}DATA_DIR"]
    assert any(volume.split(":")[1] == data_dir for volume in service["volumes"])
    # The service shares Azurite's network namespace, so its port is published there.
    owner = COMPOSE_DOC["services"][service["network_mode"].removeprefix("service:")]
    assert owner["image"].startswith("mcr.microsoft.com/azure-storage/azurite:")
    published = {str(p).rsplit(":", 1)[-1] for p in owner["ports"]}
    assert str(IMAGE.port) in published
    env = {k: interpolate(v) for k, v in compose_env().items()}
    settings = load_settings(IMAGE.env | env)
    assert (settings.blob_backend, settings.pointer_backend, settings.data_dir) == (
        "azure",
        "cosmos",
        Path(data_dir),
    )
    assert settings.allowed_hosts or settings.public_base_url, "serve --host 0.0.0.0 would refuse to start"


def test_no_secret_but_the_published_dev_values() -> None:
    for path in (DOCKERFILE, COMPOSE, DOCKERIGNORE):
        text = path.read_text()
        for key in re.findall(r"AccountKey=([^;\s\"']+)", text):
            assert key == AZURITE_KEY, f"{path.name}: an account key that is not Azurite's"
        for blob in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", text):
            assert blob == AZURITE_KEY, f"{path.name}: what looks like a key: {blob[:8]}..."
    secretish = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CONNECTION_STRING")
    for name, value in (IMAGE.env | compose_env()).items():
        if not secretish.search(name):
            continue
        if re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", value):
            continue  # required from the user's environment, no default
        literal = interpolate(value)
        if name.endswith("CONNECTION_STRING"):
            assert literal in AZURITE_CONNECTION_STRINGS, f"{name}: not Azurite's published account"
        elif name.endswith("TOKENS"):
            tokens = [entry.strip().partition(":")[0] for entry in literal.split(",") if entry.strip()]
            assert tokens and all(t.startswith(DEV_TOKEN_PREFIX) for t in tokens), name
        else:
            pytest.fail(f"{name} has a literal value in {COMPOSE.name} or the Dockerfile")


GLOB = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}  # a [class] stays as it is


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern matching it or a parent wins."""
    candidates = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        regex = "".join(
            GLOB.get(part, part if part.startswith("[") else re.escape(part))
            for part in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern)
        )
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negated
    return excluded


def test_build_context_holds_the_wheels_inputs_and_nothing_else() -> None:
    copied = [
        source.rstrip("/")
        for args in (i.args for i in instructions(DOCKERFILE.read_text()) if i.keyword == "COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *(p.rstrip("*") for p in packages)}
    assert needed <= set(copied), "setuptools builds the wheel from these"
    for source in copied:
        assert (REPO / source).exists() and not dockerignore_excludes(source), source
    assert not dockerignore_excludes("fleet_artifacts/core/models.py")
    for path in (
        ".venv/bin/python",
        ".tools/dev-token",
        ".git/HEAD",
        ".env",
        "tests/test_api.py",
        "fleet-artifacts-data/token",
        "fleet_artifacts/__pycache__/app.cpython-311.pyc",
        "fleet_artifacts.egg-info/PKG-INFO",
        ".mypy_cache/3.11/x.json",
        "bench/upload.py",
    ):
        assert dockerignore_excludes(path), path
