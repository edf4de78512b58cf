"""The forms models are published in: float16 and bfloat16 weights (computed in float32 on
the CPU), sharded safetensors, and MLX-quantized folders made here by mlx-embeddings' own
convert (which leaves 1_Pooling/ out: the architecture's own pooling, said in /info).

Measured on the fixtures (2-core x86, MLX CPU; worst of 18 texts, cosine to the float32
sentence-transformers reference): float16 copies 0.999999-1.000000, bfloat16 0.99990 (Qwen3)
to 0.99998 (BERT, ModernBERT), sharded 1.000000. Qwen3 8-bit: 0.99930 (mean 0.99969; a mean
pooling of the same folder would give 0.70); ModernBERT 8-bit (our encoder, quantized):
0.99980. Qwen3 4-bit: 0.830 (mean 0.920; mean pooling:
0.67) to the float reference, and equal to mlx-embeddings' own forward pass on the same
folder: 0.9999999 with its weights in float32 as ours are on a CPU, 0.99997 against its
pass in the folder's float16.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.checks.roundtrip import cosine
from tests.service_support import spawn_env
from tests.support import FIXTURES

TINY = FIXTURES / "tiny-models"
REFERENCE = json.loads((TINY / "reference.json").read_text())
VARIANTS = Path(__file__).with_name("model_variants.py")


def make(service_py, *args) -> str:
    done = subprocess.run([str(service_py), str(VARIANTS), *map(str, args)], env=spawn_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def worst(got, want) -> float:
    return min(cosine(g, w) for g, w in zip(got, want))


def embed_all(svc, texts, **extra) -> list[list[float]]:
    status, body = svc.post("/v1/embeddings", {"input": texts, **extra})
    assert status == 200, body
    return [d["embedding"] for d in body["data"]]


@pytest.mark.parametrize("model,kind,minimum", [
    ("bert-cls", "float16", 0.99999),
    ("modernbert-mean", "bfloat16", 0.9999),
    ("xlmr-mean", "sharded", 0.9999),
])
def test_half_precision_and_sharded_copies(tmp_path, service_factory, service_py, model, kind,
                                           minimum):
    folder = tmp_path / f"{model}-{kind}"
    make(service_py, "copy", TINY / model, folder, kind)
    svc = service_factory("--model", str(folder))
    ref = REFERENCE["models"][model]
    if svc.get("/info")[1]["precision"] == "bf16":  # auto took bf16: its parity bound
        minimum = min(minimum, 0.9999)
    got = embed_all(svc, REFERENCE["texts"])
    assert worst(got, ref["embeddings"]) >= minimum
    one = [embed_all(svc, text)[0] for text in REFERENCE["texts"][:8]]
    assert worst(one, ref["embeddings"][:8]) >= minimum
    info = svc.get("/info")[1]["model_info"]
    if kind == "sharded":
        assert info["weights"] == "float32 safetensors, 2 shards" and info["dtype"] == "float32"
    else:
        assert info["weights"] == f"{kind} safetensors"
        assert info["dtype"] == f"float32 (from {kind})"  # computed in float32 on the CPU
    if model == "bert-cls":
        assert info["forward"] == "cpu-fast"  # the BERT fast path, half weights or not


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, service_py):
    out = tmp_path_factory.mktemp("quantized")
    for bits in (8, 4):
        make(service_py, "quantize", TINY / "qwen3-last", out / f"qwen3-last-q{bits}", bits)
    make(service_py, "quantize", TINY / "modernbert-mean", out / "modernbert-mean-q8", 8)
    return out


@pytest.mark.parametrize("model,pooling", [("qwen3-last", "lasttoken"),
                                           ("modernbert-mean", "mean")])
def test_8bit_pools_as_its_architecture_and_matches_the_float_reference(
        quantized, service_factory, model, pooling):
    folder = quantized / f"{model}-q8"
    assert not (folder / "1_Pooling").exists()  # convert leaves it out
    svc = service_factory("--model", str(folder))
    ref = REFERENCE["models"][model]
    assert worst(embed_all(svc, REFERENCE["texts"]), ref["embeddings"]) >= 0.999
    if "query_embeddings" in ref:
        assert worst(embed_all(svc, REFERENCE["queries"], prompt_name="query"),
                     ref["query_embeddings"]) >= 0.999
    info = svc.get("/info")[1]["model_info"]
    assert info["pooling"] == [pooling] and "architecture's own" in info["pooling_source"]
    assert info["quantization"]["bits"] == 8 and info["weights"].startswith("MLX 8-bit")
    assert f"pooling {pooling} from no Pooling config; the architecture's own" in svc.log()


def test_4bit_qwen3_equals_the_librarys_own_forward_pass(quantized, service_factory,
                                                         service_py, tmp_path):
    folder = quantized / "qwen3-last-q4"
    texts = REFERENCE["texts"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    library = json.loads(make(service_py, "library", folder, tmp_path / "texts.json"))
    svc = service_factory("--model", str(folder))
    got = embed_all(svc, texts)
    assert worst(got, library["float32"]) >= 0.99999
    assert worst(got, library["as_loaded"]) >= 0.9999
    # 4 bits of random weights are far from the float model, but still closer to it than
    # any mean pooling of it would be: the pooling is right.
    ref = REFERENCE["models"]["qwen3-last"]["embeddings"]
    assert sum(cosine(g, r) for g, r in zip(got, ref)) / len(ref) > 0.85


def test_a_model_that_pools_without_its_prompt(tmp_path, service_factory, service_py):
    """1_Pooling's include_prompt false (INSTRUCTOR-style models): the prompt conditions the
    text's states but its own tokens are left out of the mean."""
    folder = tmp_path / "xlmr-no-prompt"
    shutil.copytree(TINY / "xlmr-mean", folder)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({**pooling,
                                                                  "include_prompt": False}))
    queries = REFERENCE["queries"]
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    expected = json.loads(make(service_py, "without-prompt", folder, "query: ",
                               tmp_path / "queries.json"))
    assert expected["skip"] >= 2  # <s> and the prompt's pieces
    svc = service_factory("--model", str(folder))
    info = svc.get("/info")[1]
    assert info["model_info"]["include_prompt"] is False
    minimum = 0.9999 if info["precision"] == "bf16" else 0.99999  # bf16's parity bound
    for batch in (queries, queries[:1]):
        got = embed_all(svc, batch, prompt_name="query")
        assert worst(got, expected["vectors"][:len(batch)]) >= minimum
    # Not what the prompt's tokens included would give (the fixture's own query vectors).
    assert worst(got, REFERENCE["models"]["xlmr-mean"]["query_embeddings"][:1]) < 0.999
