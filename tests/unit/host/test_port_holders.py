"""Who holds a port: bind probing and naming the listener."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tasks.host.port_holders import address_free, describe_holders, port_holders
from tests.support import free_port


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_free_port_is_free():
    port = free_port()
    assert address_free("127.0.0.1", port)
    assert port_holders(port, ["127.0.0.1"]) == []


def test_held_port_names_this_process(listener):
    assert not address_free("127.0.0.1", listener)
    holders = port_holders(listener, ["127.0.0.1"])
    assert [h.pid for h in holders] == [os.getpid()]
    assert f"pid {os.getpid()}" in describe_holders(holders)


def test_listener_on_another_address_does_not_count(listener):
    assert port_holders(listener, ["10.255.255.1"]) == []
    assert [h.pid for h in port_holders(listener)] == [os.getpid()]  # no filter: every address


def test_wildcard_listener_holds_every_address():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        assert not address_free("127.0.0.1", port)
        holders = port_holders(port, ["127.0.0.1"])
        assert [(h.pid, h.address) for h in holders] == [(os.getpid(), "0.0.0.0")]
    finally:
        sock.close()


def test_names_another_program_with_its_command(tmp_path):
    port = free_port()
    script = tmp_path / "holder_marker.py"
    script.write_text("import socket, sys, time\ns = socket.socket()\n"
                      "s.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\n"
                      "print('up', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        text = describe_holders(port_holders(port, ["127.0.0.1"]))
        assert f"pid {proc.pid}" in text and "holder_marker.py" in text
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while not address_free("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert address_free("127.0.0.1", port)


def test_unknown_holder_is_described():
    assert describe_holders([]) == "a program we could not identify"
