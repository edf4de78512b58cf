"""Where the time of one request goes: the HTTP path of a one-text embedding, in ms.

Run with the service's venv (it loads the model in-process and starts a service on a free
loopback port):

    .venv-mlx/bin/python tasks/bench/scripts/request_path.py [--repeats 300]

Each part is timed alone (median of its repeats), the whole request over real HTTP at idle;
"waitress + Flask + queue hop" is the whole minus the parts. The JSON encoders are compared
on the same vectors: one 384-float row, and 512 rows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

# What the service venv can import from tasks/: standard library and requests only (no invoke,
# dotenv, prometheus_client there), so no tasks.core.settings and no test support.
from tasks.bench.engines import BenchService  # noqa: E402
from tasks.bench.stats import median  # noqa: E402
from tasks.core.local_http import KeepAliveClient  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx_service.kernels.blas import maybe_reexec
    # The same BLAS as the service: this script re-execs itself with it preloaded.
    maybe_reexec("auto", [], command=[sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])

    import numpy as np
    import orjson

    from mlx_service.http.validation import decode_json, parse_embed_request
    from mlx_service.models.embedder import Embedder, truncate_normalize
    from mlx_service.models.folder import read_spec

    spec = read_spec(None)
    embedder = Embedder(spec)
    body = json.dumps({"input": TEXT}).encode()
    rows = embedder.tokenize([TEXT])
    embedder.embed(rows)
    vectors = truncate_normalize(embedder.embed(rows), 384)
    many = np.repeat(vectors, 512, axis=0)
    r = args.repeats
    parts = {
        "JSON decode of the body": median_ms(lambda: decode_json(body), r),
        "validation": median_ms(lambda: parse_embed_request(decode_json(body), openai=True,
                                                            max_items=2048, max_dim=384), r),
        "tokenize (bounded)": median_ms(lambda: embedder.tokenize([TEXT]), r),
        "forward pass (model)": median_ms(lambda: embedder.embed(rows), max(20, r // 5)),
        "normalize": median_ms(lambda: truncate_normalize(vectors, 384), r),
        "JSON encode, orjson": median_ms(
            lambda: orjson.dumps({"data": list(vectors)}, option=orjson.OPT_SERIALIZE_NUMPY), r),
    }
    encoders = {
        "1 x 384, json + tolist": median_ms(lambda: json.dumps({"data": vectors.tolist()}), r),
        "1 x 384, orjson": parts["JSON encode, orjson"],
        "512 x 384, json + tolist": median_ms(lambda: json.dumps({"data": many.tolist()}), 20),
        "512 x 384, orjson": median_ms(
            lambda: orjson.dumps({"data": list(many)}, option=orjson.OPT_SERIALIZE_NUMPY), 20),
    }

    logs = Path(tempfile.mkdtemp(prefix="request-path-"))
    svc = BenchService(Path(sys.executable), ROOT, logs / "service.log")
    client = KeepAliveClient(svc.port, timeout=30)
    try:
        svc.start()
        headers = {"Content-Type": "application/json"}

        def one():
            assert client.request("POST", "/v1/embeddings", body, headers).status == 200

        for _ in range(20):
            one()
        total = median_ms(one, r)
        health = median_ms(lambda: client.request("GET", "/health"), r)
    finally:
        client.close()
        svc.stop()

    print(f"one-text request ({TEXT!r}), medians in ms, {os.cpu_count()} cores")
    for name, ms in parts.items():
        print(f"  {name:38} {ms:8.3f}")
    rest = total - sum(parts.values())
    print(f"  {'waitress + Flask + queue hop (rest)':38} {rest:8.3f}")
    print(f"  {'whole request over HTTP':38} {total:8.3f}")
    print(f"  {'GET /health over HTTP (no model)':38} {health:8.3f}")
    print("JSON encoders, same vectors:")
    for name, ms in encoders.items():
        print(f"  {name:38} {ms:8.3f}")
    print(f"  orjson / json: 1 row {encoders['1 x 384, json + tolist'] / encoders['1 x 384, orjson']:.1f}x,"
          f" 512 rows {encoders['512 x 384, json + tolist'] / encoders['512 x 384, orjson']:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
