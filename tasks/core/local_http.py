"""HTTP to the stack's own services on loopback: the one way the tasks make an HTTP call.

`requests` honours HTTP_PROXY/http_proxy even for 127.0.0.1 when NO_PROXY does not list it;
behind a corporate proxy every probe would then go to the proxy host and fail. A session
that ignores the environment keeps these requests on this machine.
"""
from __future__ import annotations

import http.client
import ipaddress
from typing import Mapping, NamedTuple
from urllib.parse import urlsplit

import requests

RequestException = requests.RequestException
ConnectionError = requests.ConnectionError  # noqa: A001 (requests' name, re-exported)
Timeout = requests.Timeout


def local_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies, no .netrc: loopback only
    return session


def get(url: str, **kwargs) -> requests.Response:
    with local_session() as session:
        return session.get(url, **kwargs)


def post(url: str, **kwargs) -> requests.Response:
    with local_session() as session:
        return session.post(url, **kwargs)


def http_ok(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(answered with 2xx, what it said in a few words)."""
    try:
        resp = get(url, timeout=timeout)
    except requests.ConnectionError:
        return False, "connection refused"
    except requests.Timeout:
        return False, f"no answer within {timeout:g}s"
    except requests.RequestException as exc:
        return False, type(exc).__name__
    text = resp.text.strip().replace("\n", " ")
    return 200 <= resp.status_code < 300, f"HTTP {resp.status_code} {text[:120]}".strip()


def get_json(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
             ) -> tuple[int | None, object | None, str]:
    """GET url: (HTTP status or None, the JSON body or None, a short description)."""
    try:
        resp = get(url, timeout=timeout, headers=headers)
    except requests.RequestException as exc:
        reason = "connection refused" if isinstance(exc, requests.ConnectionError) else (
            f"no answer within {timeout:g}s" if isinstance(exc, requests.Timeout)
            else type(exc).__name__)
        return None, None, f"no answer ({reason})"
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body, f"HTTP {resp.status_code}"


# --- keep-alive connections, for load and measurement -------------------------------------

class Answer(NamedTuple):
    """One HTTP answer: status, headers (names in lower case), body."""
    status: int
    headers: dict[str, str]
    body: bytes


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection to a service on this machine (stdlib http.client).

    The one client for load and measurement (inv bench, inv stress, the bench scripts). On a
    2-core machine the clients share the cores with the service under test: a library client
    (requests: a pool, hooks, header merging and decoding on every call) would take them from
    the service and measure itself. http.client reads no proxy settings, and a host that is
    not a loopback address is refused: this is for the stack's own services only.

    `reconnect`: a request that fails on the open connection (the server dropped an idle
    keep-alive connection) is sent once more on a new one. Leave it off where a failed request
    is itself a figure (stress counts it as no answer).
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None, reconnect: bool = False):
        if not is_loopback(host):
            raise ValueError(f"{host} is not a loopback address")
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = dict(headers or {})
        self.reconnect = reconnect
        self.conn: http.client.HTTPConnection | None = None

    @classmethod
    def for_url(cls, url: str, **kwargs) -> "KeepAliveClient":
        parts = urlsplit(url)
        return cls(parts.port, parts.hostname, **kwargs)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Answer:
        attempts = 2 if self.reconnect else 1
        for attempt in range(1, attempts + 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body,
                                  headers={**self.headers, **(headers or {})})
                resp = self.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == attempts:
                    raise
                continue
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False
