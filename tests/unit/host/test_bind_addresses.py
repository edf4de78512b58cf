"""Listen addresses: MLX_HOST plus the Docker bridge gateway (found, never assumed)."""
from __future__ import annotations

from tasks.host import bind_addresses as ba
from tasks.host.launch import service_url
from tasks.core.settings import load_settings


def test_host_list_parsing():
    assert ba.host_list("127.0.0.1") == ["127.0.0.1"]
    assert ba.host_list(" 127.0.0.1 , ::1,") == ["127.0.0.1", "::1"]
    assert ba.host_list("") == ["127.0.0.1"]


def test_linux_adds_the_bridge_gateway():
    got = ba.compute_bind_addresses("127.0.0.1", platform="linux",
                                    gateway_finder=lambda: "172.18.0.1")
    assert got == ["127.0.0.1", "172.18.0.1"]


def test_no_docker_adds_nothing():
    assert ba.compute_bind_addresses("127.0.0.1", platform="linux",
                                     gateway_finder=lambda: None) == ["127.0.0.1"]


def test_macos_is_loopback_only():
    def boom():
        raise AssertionError("must not look for a bridge on macOS")
    assert ba.compute_bind_addresses("127.0.0.1", platform="darwin",
                                     gateway_finder=boom) == ["127.0.0.1"]


def test_wildcard_only_when_asked_and_then_nothing_added():
    got = ba.compute_bind_addresses("0.0.0.0", platform="linux",
                                    gateway_finder=lambda: "172.17.0.1")
    assert got == ["0.0.0.0"]


def test_gateway_already_listed_is_not_repeated():
    got = ba.compute_bind_addresses("127.0.0.1,172.17.0.1", platform="linux",
                                    gateway_finder=lambda: "172.17.0.1")
    assert got == ["127.0.0.1", "172.17.0.1"]


def test_bridge_can_be_turned_off():
    assert ba.compute_bind_addresses("127.0.0.1", platform="linux", bridge=False,
                                     gateway_finder=lambda: "172.17.0.1") == ["127.0.0.1"]
    settings = load_settings(environ={"MLX_BIND_DOCKER_BRIDGE": "0", "MLX_HOST": "127.0.0.1"})
    assert ba.bind_addresses(settings) == ["127.0.0.1"]


def test_gateway_from_the_docker0_interface():
    interfaces = {"lo": ["127.0.0.1"], "docker0": ["172.30.0.1"], "eth0": ["10.0.0.5"]}
    assert ba.docker_bridge_gateway(interfaces, cli=lambda: "10.9.9.9") == "172.30.0.1"


def test_gateway_from_docker_cli_only_when_it_is_local():
    interfaces = {"lo": ["127.0.0.1"], "br-custom": ["172.31.0.1"]}
    assert ba.docker_bridge_gateway(interfaces, cli=lambda: "172.31.0.1") == "172.31.0.1"
    # A remote engine (DOCKER_HOST elsewhere): its gateway is not ours to listen on.
    assert ba.docker_bridge_gateway(interfaces, cli=lambda: "172.99.0.1") is None
    assert ba.docker_bridge_gateway(interfaces, cli=lambda: None) is None


def test_this_machine_gets_only_local_addresses_and_never_the_wildcard():
    settings = load_settings(environ={"MLX_HOST": "127.0.0.1"})
    got = ba.bind_addresses(settings)
    local = {a for addrs in ba.local_ipv4_addresses().values() for a in addrs}
    assert got[0] == "127.0.0.1"
    assert "0.0.0.0" not in got
    assert set(got) <= local
    docker0 = ba.local_ipv4_addresses().get("docker0")
    if docker0:  # a fact of this machine, not a skip: the assertion differs, both can fail
        assert docker0[0] in got
    else:
        assert len(got) == 1 or set(got[1:]) <= local


def test_url_uses_the_first_address():
    s = load_settings(environ={"MLX_HOST": "127.0.0.1,172.17.0.1", "MLX_PORT": "9999"})
    assert service_url(s) == "http://127.0.0.1:9999"
    assert service_url(s, ["0.0.0.0"]) == "http://127.0.0.1:9999"
    assert service_url(s, ["::1"]) == "http://[::1]:9999"
    # The one URL builder (settings.http_url): a zone id is escaped, a bracketed host kept.
    assert service_url(s, ["fe80::1%eth0"]) == "http://[fe80::1%25eth0]:9999"
    assert service_url(s, ["[::1]"]) == "http://[::1]:9999"
    assert service_url(s, ["::"]) == "http://[::1]:9999"
