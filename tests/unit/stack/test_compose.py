"""The Compose wrapper: `ps` JSON in both formats, argv, engine detection, service names."""
import json
import stat
from pathlib import Path

import pytest

from tasks.core.settings import ALL_SERVICES, load_settings
from tasks.stack.compose import Compose, compose_files
from tasks.stack.container import parse_ps_json
from tasks.stack.engine import Engine, EngineError, find_engine
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.images import debian_mirror
from tasks.stack.project import compose_env
from tasks.stack.services import parse_services

# Captured from `docker compose ps --all --format json` (Compose 2.26.1): one object per line.
# (Labels, Mounts and LocalVolumes trimmed.)
PS_LINES_2_26 = r'''{"Command":"\"python3 /app/regist\u2026\"","CreatedAt":"2026-11-27 03:58:51 +0000 UTC","ExitCode":0,"Health":"healthy","ID":"61e014fb7654","Image":"cortex-dev/mcp-registry:dev","Name":"cortex-manual-mcp-registry-1","Names":"cortex-manual-mcp-registry-1","Networks":"cortex-manual_default","Ports":"127.0.0.1:18084->8084/tcp","Project":"cortex-manual","Publishers":[{"URL":"127.0.0.1","TargetPort":8084,"PublishedPort":18084,"Protocol":"tcp"}],"RunningFor":"11 seconds ago","Service":"mcp-registry","Size":"0B","State":"running","Status":"Up 10 seconds (healthy)"}
{"Command":"\"python3 /app/gatewa\u2026\"","CreatedAt":"2026-11-27 03:58:51 +0000 UTC","ExitCode":0,"Health":"healthy","ID":"de580497dde3","Image":"cortex-dev/model-gateway:dev","Name":"cortex-manual-model-gateway-1","Names":"cortex-manual-model-gateway-1","Networks":"cortex-manual_default","Ports":"127.0.0.1:18083->8083/tcp","Project":"cortex-manual","Publishers":[{"URL":"127.0.0.1","TargetPort":8083,"PublishedPort":18083,"Protocol":"tcp"}],"RunningFor":"11 seconds ago","Service":"model-gateway","Size":"0B","State":"running","Status":"Up 10 seconds (healthy)"}
{"Command":"\"/nats-server --jets\u2026\"","CreatedAt":"2026-11-27 03:58:51 +0000 UTC","ExitCode":0,"Health":"healthy","ID":"bd69f202e40d","Image":"cortex-dev/nats:local","Name":"cortex-manual-nats-1","Names":"cortex-manual-nats-1","Networks":"cortex-manual_default","Ports":"6222/tcp, 127.0.0.1:14222->4222/tcp, 127.0.0.1:18222->8222/tcp","Project":"cortex-manual","Publishers":[{"URL":"127.0.0.1","TargetPort":4222,"PublishedPort":14222,"Protocol":"tcp"},{"URL":"","TargetPort":6222,"PublishedPort":0,"Protocol":"tcp"},{"URL":"127.0.0.1","TargetPort":8222,"PublishedPort":18222,"Protocol":"tcp"}],"RunningFor":"11 seconds ago","Service":"nats","Size":"0B","State":"running","Status":"Up 10 seconds (healthy)"}
'''

# The shape Compose 2.20 and older print: one JSON array (here an exited and a starting container).
PS_ARRAY_2_20 = '''[{"ID":"0d4b6a0f5c2e","Name":"cortex-nats-1","Image":"nats:2.10-alpine","Command":"docker-entrypoint.sh --jetstream","Project":"cortex","Service":"nats","Created":1732678731,"State":"exited","Status":"Exited (1) 3 seconds ago","Health":"","ExitCode":1,"Publishers":null},
 {"ID":"9a1c77e3b210","Name":"cortex-model-gateway-1","Image":"cortex-dev/model-gateway:dev","Command":"python3 /app/gateway.py","Project":"cortex","Service":"model-gateway","Created":1732678731,"State":"running","Status":"Up 2 seconds (health: starting)","Health":"starting","ExitCode":0,"Publishers":[{"URL":"127.0.0.1","TargetPort":8083,"PublishedPort":8083,"Protocol":"tcp"}]}]'''


def test_ps_reads_one_object_per_line():
    containers = parse_ps_json(PS_LINES_2_26)
    assert [c.service for c in containers] == ["mcp-registry", "model-gateway", "nats"]
    assert all(c.state == "running" and c.health == "healthy" for c in containers)
    nats = containers[2]
    assert nats.name == "cortex-manual-nats-1"
    assert [p.published_port for p in nats.publishers] == [14222, 0, 18222]


def test_ps_reads_one_json_array():
    containers = parse_ps_json(PS_ARRAY_2_20)
    assert [(c.name, c.state, c.health) for c in containers] == [
        ("cortex-nats-1", "exited", ""), ("cortex-model-gateway-1", "running", "starting")]
    assert containers[0].publishers == ()  # null in the array format


def test_ps_both_formats_give_the_same_containers():
    as_array = "[" + ",".join(PS_LINES_2_26.strip().splitlines()) + "]"
    assert parse_ps_json(as_array) == parse_ps_json(PS_LINES_2_26)
    assert parse_ps_json(PS_LINES_2_26.encode()) == parse_ps_json(PS_LINES_2_26)


def test_ps_single_object_and_empty_output():
    one = PS_LINES_2_26.splitlines()[0]
    assert parse_ps_json(one)[0].service == "mcp-registry"
    assert parse_ps_json("") == [] and parse_ps_json("\n  \n") == [] and parse_ps_json("[]") == []


def test_ps_names_the_line_that_is_not_json():
    with pytest.raises(ComposeError, match="line 2"):
        parse_ps_json(PS_LINES_2_26.splitlines()[0] + "\nWARN[0000] something odd\n")


def test_ps_service_from_labels_when_missing():
    [c] = parse_ps_json(json.dumps({"Names": ["x-nats-1"], "State": "Running",
                                    "Labels": {"com.docker.compose.service": "nats"}}))
    assert (c.name, c.service, c.state) == ("x-nats-1", "nats", "running")


ENGINE = Engine("docker", "/usr/bin/docker", ("/usr/bin/docker", "compose"), "2.26.1")


def test_argv_names_project_files_env_file_and_profiles(tmp_path):
    env_file = tmp_path / ".env.dev"
    env_file.write_text("X=1\n")
    files = compose_files(tmp_path, offline=True, extra=[tmp_path / "extra.yml"])
    compose = Compose(ENGINE, "cortex-test", tmp_path, files, env_file,
                      env={"DOCKER_HOST": "tcp://10.0.0.9:2375"})
    argv = compose.argv("ps", "--format", "json")
    assert argv[:2] == ["/usr/bin/docker", "compose"]
    joined = " ".join(argv)
    assert "--project-name cortex-test" in joined
    assert f"--file {tmp_path / 'docker-compose.yml'} --file {tmp_path / 'docker-compose.offline.yml'}" \
        f" --file {tmp_path / 'extra.yml'}" in joined
    assert f"--env-file {env_file}" in joined
    assert "--profile core --profile app" in joined
    assert argv[-3:] == ["ps", "--format", "json"]
    # DOCKER_HOST / contexts are the user's: never overridden on the command line
    assert "--context" not in argv and "-H" not in argv and "--host" not in argv
    missing = Compose(ENGINE, "p", tmp_path, files, tmp_path / "absent.env")
    assert "--env-file" not in missing.argv("ps")


def _fake_cli(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_no_engine_on_path_is_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError) as info:
        find_engine({"PATH": str(tmp_path / "empty")})
    message = str(info.value)
    assert message.startswith("No container engine found") and message.count(". ") == 0


def test_daemon_that_does_not_answer(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake_cli(bin_dir, "docker", 'case "$1" in\n compose) echo 2.26.1; exit 0;;\n'
              ' info) echo "Cannot connect to the Docker daemon at unix:///nope.sock." >&2;'
              ' exit 1;;\nesac\n')
    env = {"PATH": str(bin_dir), "DOCKER_HOST": "unix:///nope.sock"}
    engine = find_engine(env, check_daemon=False)
    assert engine.kind == "docker" and engine.version == "2.26.1"
    with pytest.raises(EngineError) as info:
        find_engine(env)
    assert "DOCKER_HOST=unix:///nope.sock" in str(info.value)
    assert "does not answer" in str(info.value)


def test_podman_compose_when_docker_is_absent(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake_cli(bin_dir, "podman", 'case "$1" in\n compose) echo "podman-compose 1.2"; exit 0;;\n'
              ' info) echo 5.0.1;;\nesac\n')
    engine = find_engine({"PATH": str(bin_dir)})
    assert engine.kind == "podman" and engine.compose[-1] == "compose"
    compose = Compose(engine, "p", tmp_path, [tmp_path / "docker-compose.yml"])
    assert "--ansi" not in compose.argv("ps")


def test_docker_without_compose_plugin(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake_cli(bin_dir, "docker", 'echo "docker: unknown command: compose" >&2; exit 1\n')
    with pytest.raises(EngineError, match="Compose v2 plugin"):
        find_engine({"PATH": str(bin_dir)})


@pytest.mark.parametrize("given, expected", [
    (None, list(ALL_SERVICES)),
    ([], list(ALL_SERVICES)),
    ("nats,model-gateway", ["nats", "model-gateway"]),
    (["nats", "model-gateway,nats"], ["nats", "model-gateway"]),
    ([" nats , mcp-registry "], ["nats", "mcp-registry"]),
    (["app"], ["model-gateway", "mcp-registry"]),
    (["core", "nats"], ["nats", "grafana", "loki", "tempo", "prometheus"]),
])
def test_services_comma_lists_repeats_and_groups(given, expected):
    assert parse_services(given) == expected


def test_unknown_service_lists_the_valid_ones():
    with pytest.raises(StackError) as info:
        parse_services(["nats,natz", "redis"])
    message = str(info.value)
    assert "'natz'" in message and "'redis'" in message
    for name in ALL_SERVICES:
        assert name in message


def test_compose_env_carries_ports_and_host_url_but_keeps_docker_host():
    settings = load_settings(environ={"MLX_PORT": "18081", "CORTEX_NATS_PORT": "14222",
                                      "DOCKER_HOST": "ssh://builder"})
    env = compose_env(settings)
    assert env["MLX_HOST_URL"] == "http://host.docker.internal:18081"
    assert env["CORTEX_NATS_PORT"] == "14222" and env["DOCKER_HOST"] == "ssh://builder"


DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_debian_mirror_from_deb822_and_one_line_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(DEB822)
    assert debian_mirror((deb822,)) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb http://sec.example/debian-security bookworm-security main\n"
                        "deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert debian_mirror((tmp_path / "absent.sources", one_line)) == "http://other.example/debian"
    from tasks.stack.images import ImageError
    with pytest.raises(ImageError, match="CORTEX_DEBIAN_MIRROR"):
        debian_mirror((tmp_path / "absent.sources",))


def test_cursor_codes_are_stripped_from_compose_output():
    from tasks.core.output_text import strip_ansi
    raw = "\x1b[2Knats-1  | [1] Server is ready\n\x1b[2Kmodel-gateway-1  | GET /health\n"
    assert strip_ansi(raw) == "nats-1  | [1] Server is ready\nmodel-gateway-1  | GET /health\n"
