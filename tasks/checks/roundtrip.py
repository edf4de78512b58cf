"""End-to-end embedding and rerank check (`inv roundtrip`): host service, then through the
gateway."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from tasks.checks import rerank_check
from tasks.core import local_http
from tasks.core.errors import TaskError
from tasks.core.settings import Settings, SettingsError, http_url
from tasks.host.health import foreign_listener
from tasks.host.running_service import aimed_at_running_service
from tasks.stack.started_record import started_services

# The seed's own round-trip payload, kept as users know it.
SEED_PAYLOAD = {"input": ["hello world", "cortex os embeddings"], "model": "qwen3-embed"}
RELATED = ("A cat sits on the mat.", "A kitten is resting on a rug.")
UNRELATED = "Quarterly tax filings are due in April."


@dataclass
class Step:
    name: str
    status: str  # pass, fail, skip
    detail: str


@dataclass
class Roundtrip:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status != "fail" for step in self.steps)

    def summary(self) -> str:
        counts = {s: sum(step.status == s for step in self.steps) for s in ("pass", "fail", "skip")}
        verdict = "PASSED" if self.ok else "FAILED"
        return (f"roundtrip {verdict}: {counts['pass']} passed, {counts['fail']} failed, "
                f"{counts['skip']} skipped")

    def as_document(self) -> dict:
        return {"ok": self.ok, "summary": self.summary(), "steps": [asdict(s) for s in self.steps]}


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


class KeyRefused(TaskError, RuntimeError):
    """A 401: the service wants MLX_API_KEY and we have none, or not its key."""


def key_refused_sentence(url: str, key_sent: bool) -> str:
    """What to do about a 401, naming the setting and never the key."""
    if key_sent:
        return (f"{url} refused the key in MLX_API_KEY (401): set MLX_API_KEY, in the "
                f"environment or .env.dev, to the key the host service was started with")
    return (f"{url} wants an API key (401) and MLX_API_KEY is not set here: set it, in the "
            f"environment or .env.dev, to the key the host service was started with")


def _post(url: str, payload: dict, timeout: float, headers: dict[str, str]) -> dict:
    response = local_http.post(url, json=payload, timeout=timeout, headers=headers)
    if response.status_code == 401:
        raise KeyRefused(key_refused_sentence(url, bool(headers)))
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.json()


def run_roundtrip(settings: Settings, timeout: float = 30.0,
                  progress: Callable[[Step], None] = lambda step: None) -> Roundtrip:
    result = Roundtrip()
    # The service where it runs (its PID file), as `inv status` finds it: not only the port
    # configured now.
    settings = aimed_at_running_service(settings)

    def record(name: str, status: str, detail: str) -> None:
        step = Step(name, status, detail)
        result.steps.append(step)
        progress(step)

    host = settings.mlx_url
    try:
        auth = settings.mlx_auth_headers()  # MLX_API_KEY, sent to every embedding endpoint
    except SettingsError as exc:
        record("host health", "fail", str(exc))
        return result
    # 1. health (open: no key needed)
    try:
        health = local_http.get(settings.mlx_endpoint("/health"), timeout=timeout)
    except local_http.RequestException as exc:
        record("host health", "fail", f"no answer from {host}/health ({type(exc).__name__}); "
               "start it with: inv mlx start")
        return result
    try:
        body = health.json()
    except ValueError:
        body = None
    # Something answers, but is it the embedding service? (another program on the port)
    foreign = foreign_listener(settings.mlx_port, health.status_code, body)
    if foreign:
        record("host health", "fail", foreign)
        return result
    if health.status_code != 200 or body.get("status") != "ok":
        record("host health", "fail", f"{host}/health answered {health.status_code} {body.get('status')!r}")
        return result
    dimensions = body.get("dimensions")
    record("host health", "pass", f"{body.get('model')} ready at {host}, {dimensions} dimensions")

    # 2. the seed's /embed payload
    host_vectors = None
    try:
        embed = _post(settings.mlx_endpoint("/embed"), SEED_PAYLOAD, timeout, auth)
        vectors = embed.get("embeddings") or []
        dims = {len(v) for v in vectors}
        if len(vectors) < 2:
            record("host /embed", "fail", f"{len(vectors)} embeddings for 2 inputs")
        elif dims != {dimensions}:
            record("host /embed", "fail", f"dimension {sorted(dims)} differs from /health's {dimensions}")
        else:
            host_vectors = vectors
            # The seed's payload names a model of its own; the service answers it with the one
            # it serves: that one is what was checked.
            record("host /embed", "pass", f"{len(vectors)} embeddings of {dimensions} dimensions "
                   f"from {embed.get('model')!r}, the served model")
    except KeyRefused as exc:
        record("host /embed", "fail", str(exc))
        return result  # every other step would say the same
    except (local_http.RequestException, RuntimeError, ValueError) as exc:
        record("host /embed", "fail", str(exc))

    # 3. OpenAI shape
    try:
        openai = _post(settings.mlx_endpoint("/v1/embeddings"), {"input": SEED_PAYLOAD["input"]}, timeout, auth)
        data = openai.get("data") or []
        shaped = (openai.get("object") == "list" and len(data) == 2
                  and all(d.get("object") == "embedding" and d.get("index") == i for i, d in enumerate(data))
                  and "usage" in openai)
        record("host /v1/embeddings", "pass" if shaped else "fail",
               "OpenAI shape: list, 2 embeddings, usage" if shaped else f"unexpected shape: {str(openai)[:200]}")
    except (local_http.RequestException, RuntimeError, ValueError) as exc:
        record("host /v1/embeddings", "fail", str(exc))

    # 4. meaning
    try:
        a, b, c = _post(settings.mlx_endpoint("/embed"), {"input": [*RELATED, UNRELATED]}, timeout,
                        auth)["embeddings"]
        related, unrelated = cosine(a, b), cosine(a, c)
        record("meaning", "pass" if related > unrelated else "fail",
               f"related {related:.3f} vs unrelated {unrelated:.3f}")
    except (local_http.RequestException, RuntimeError, ValueError, KeyError) as exc:
        record("meaning", "fail", str(exc))

    # 4b. reranking on the host (rerank_check.py): the relevant document first
    host_ranking = rerank_check.host_rerank(settings.mlx_endpoint("/rerank"),
                                            settings.mlx_endpoint("/info"), timeout, auth, record)

    # 5. through the gateway container, when it runs
    gateway = http_url("127.0.0.1", settings.port("CORTEX_MODEL_GATEWAY_PORT"))
    try:
        local_http.get(f"{gateway}/health", timeout=3)
    except local_http.RequestException:
        if "model-gateway" in started_services(settings):  # `inv start` started it: gone
            record("gateway", "fail", f"model-gateway does not answer at {gateway}, but inv "
                   "start started it (its container was stopped or removed): inv start "
                   "starts it again")
        else:
            record("gateway", "skip", f"model-gateway not started (nothing at {gateway}): "
                   "gateway part not run")
        return result
    try:
        # The gateway sends its own MLX_API_KEY upstream, else the client's: ours.
        via_gateway = _post(f"{gateway}/embed", SEED_PAYLOAD, timeout, auth)["embeddings"]
        if host_vectors is None:
            record("gateway", "fail", "gateway answered, but the host's vectors were not available to compare")
        else:
            worst = min(cosine(x, y) for x, y in zip(host_vectors, via_gateway))
            same = len(via_gateway) == len(host_vectors) and worst >= 0.9999
            record("gateway", "pass" if same else "fail",
                   f"container -> host vectors equal the host's (min cosine {worst:.6f})" if same
                   else f"gateway vectors differ from the host's (min cosine {worst:.6f})")
    except (local_http.RequestException, RuntimeError, ValueError, KeyError) as exc:
        record("gateway", "fail", str(exc))
    # 6. reranking through the gateway: Cortex-OS's shape, the host's order and scores
    rerank_check.gateway_rerank(gateway, host_ranking, timeout, auth, record)
    return result
