"""HTTP to the stack's own services on loopback: never through a proxy.

`requests` honours HTTP_PROXY/http_proxy even for 127.0.0.1 when NO_PROXY does not list it;
behind a corporate proxy every probe would then go to the proxy host and fail. A session
that ignores the environment keeps these requests on this machine.
"""
from __future__ import annotations

import requests

RequestException = requests.RequestException


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
