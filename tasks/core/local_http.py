"""HTTP to the stack's own services on loopback: the one way the tasks make an HTTP call.

`requests` honours HTTP_PROXY/http_proxy even for 127.0.0.1 when NO_PROXY does not list it;
behind a corporate proxy every probe would then go to the proxy host and fail. A session
that ignores the environment keeps these requests on this machine.
"""
from __future__ import annotations

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
