"""The six architectures of `more-reference.json` in the other forms they are published in:
float16 weights (the Dense heads' too; computed in float32 on the CPU), and an 8-bit
MLX-quantized copy where mlx-embeddings' convert makes one. It makes none of the six as they
stand: MPNet, DistilBERT, Qwen2 and Mistral have no module there, its gemma3_text needs
mlx-lm, a Dense module's weights stop it ("parameters not in model") and its BERT loader
wants a pooler; BERT with its Dense head is converted without the head (and with a zero
pooler, as LaBSE's checkpoint has a pooler) and given the head back
(model_variants.py quantize-heads).
"""
from __future__ import annotations

import json

import pytest

from tests.service.mlx_service.test_models_variants import embed_all, make, worst
from tests.support import FIXTURES

TINY = FIXTURES / "tiny-models"
MORE = json.loads((TINY / "more-reference.json").read_text())


@pytest.mark.parametrize("model", ["mpnet-mean", "distilbert-cls", "gemma3-dense",
                                   "bert-dense-tanh", "qwen2-last", "mistral-last"])
def test_float16_copy(tmp_path, service_factory, service_py, model):
    folder = tmp_path / f"{model}-float16"
    make(service_py, "copy", TINY / model, folder, "float16")
    svc = service_factory("--model", str(folder))
    ref = MORE["models"][model]
    assert worst(embed_all(svc, MORE["texts"]), ref["embeddings"]) >= 0.9999
    one = [embed_all(svc, text)[0] for text in MORE["texts"][:6]]
    assert worst(one, ref["embeddings"][:6]) >= 0.9999
    if "query_embeddings" in ref:
        assert worst(embed_all(svc, MORE["queries"], prompt_name="query"),
                     ref["query_embeddings"]) >= 0.9999
    info = svc.get("/info")[1]["model_info"]
    assert info["weights"] == "float16 safetensors"
    assert info["dtype"] == "float32 (from float16)"


def test_8bit_bert_with_its_dense_head(tmp_path, service_factory, service_py):
    folder = tmp_path / "bert-dense-tanh-q8"
    make(service_py, "quantize-heads", TINY / "bert-dense-tanh", folder, 8)
    assert json.loads((folder / "config.json").read_text())["quantization"]["bits"] == 8
    svc = service_factory("--model", str(folder))
    ref = MORE["models"]["bert-dense-tanh"]
    got = embed_all(svc, MORE["texts"])
    assert len(got[0]) == 48  # the Dense head ran
    assert worst(got, ref["embeddings"]) >= 0.999
    info = svc.get("/info")[1]["model_info"]
    assert info["weights"].startswith("MLX 8-bit") and info["forward"] == "mlx"
    assert info["modules"] == ["Dense 64->48 tanh", "Normalize"]


def test_a_folder_without_normalize_still_gives_unit_vectors(tmp_path, service_factory):
    """sentence-transformers would return the Dense output's own length; the service's
    endpoints promise unit vectors (OpenAI's and TEI's do): the same direction, norm 1."""
    import shutil
    folder = tmp_path / "bert-dense-tanh-unnormalized"
    shutil.copytree(TINY / "bert-dense-tanh", folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(
        [m for m in modules if not m["type"].endswith("Normalize")]))
    shutil.rmtree(folder / "3_Normalize", ignore_errors=True)
    svc = service_factory("--model", str(folder))
    got = embed_all(svc, MORE["texts"])
    assert worst(got, MORE["models"]["bert-dense-tanh"]["embeddings"]) >= 0.9999
    assert all(abs(sum(x * x for x in row) - 1.0) < 1e-4 for row in got)
    assert svc.get("/info")[1]["model_info"]["modules"] == ["Dense 64->48 tanh"]
