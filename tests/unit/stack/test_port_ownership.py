"""Our containers' published ports come from the Publishers of `compose ps --format json`
(parsed by tasks.stack.container.parse_ps_json), not from `docker ps` text."""
import inspect

from tasks.stack import port_ownership
from tasks.stack.container import parse_ps_json
from tasks.stack.port_ownership import published_ports

# Compose 2.26 (one object per line), trimmed to the keys that matter here.
PS_LINES = "\n".join([
    '{"Name":"p-nats-1","Service":"nats","State":"running","Publishers":['
    '{"URL":"127.0.0.1","TargetPort":4222,"PublishedPort":41222,"Protocol":"tcp"},'
    '{"URL":"127.0.0.1","TargetPort":8222,"PublishedPort":41223,"Protocol":"tcp"},'
    '{"URL":"","TargetPort":6222,"PublishedPort":0,"Protocol":"tcp"}]}',
    '{"Name":"p-model-gateway-1","Service":"model-gateway","State":"restarting","Publishers":['
    '{"URL":"::1","TargetPort":8083,"PublishedPort":41083,"Protocol":"tcp"}]}',
    '{"Name":"p-mcp-registry-1","Service":"mcp-registry","State":"exited","Publishers":['
    '{"URL":"127.0.0.1","TargetPort":8084,"PublishedPort":41084,"Protocol":"tcp"}]}',
    '{"Name":"p-loki-1","Service":"loki","State":"running","Publishers":null}',
])


def test_published_ports_of_live_containers():
    assert published_ports(parse_ps_json(PS_LINES)) == {41222, 41223, 41083}


def test_the_older_array_format_reads_the_same():
    array = "[" + ",".join(PS_LINES.splitlines()) + "]"
    assert published_ports(parse_ps_json(array)) == {41222, 41223, 41083}


def test_nothing_running_publishes_nothing():
    assert published_ports(parse_ps_json("")) == set()
    assert published_ports(parse_ps_json(
        '{"State": "running", "Publishers": [{"PublishedPort": "x"}, null]}')) == set()


def test_no_engine_cli_is_named_in_the_code():
    assert '"docker"' not in inspect.getsource(port_ownership)
