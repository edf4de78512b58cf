"""Reading a model folder's sentence-transformers files: pooling, max_seq_length, dims."""
from __future__ import annotations

import json

import pytest

from mlx_service.models.folder import (ModelError, ModelSpec, check_dim, looks_like_path,
                                      read_max_seq_length, read_native_dim)
from mlx_service.models.pooling import PoolingError, read_pooling


def write(folder, rel, data):
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("cfg,modes", [
    ({"pooling_mode_mean_tokens": True}, ("mean",)),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, ("cls",)),
    ({"pooling_mode_max_tokens": True}, ("max",)),
    ({"pooling_mode_lasttoken": True}, ("lasttoken",)),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, ("cls", "mean")),
    ({"pooling_mode": "cls"}, ("cls",)),
])
def test_pooling_from_config(tmp_path, cfg, modes):
    write(tmp_path, "1_Pooling/config.json", {"word_embedding_dimension": 8, **cfg})
    assert read_pooling(tmp_path).modes == modes


def test_pooling_folder_named_by_modules_json(tmp_path):
    write(tmp_path, "modules.json", [{"path": "", "type": "sentence_transformers.models.Transformer"},
                                     {"path": "pool", "type": "sentence_transformers.models.Pooling"}])
    write(tmp_path, "pool/config.json", {"pooling_mode_cls_token": True})
    assert read_pooling(tmp_path).modes == ("cls",)


def test_pooling_default_and_refusals(tmp_path):
    assert read_pooling(tmp_path).modes == ("mean",)
    write(tmp_path, "1_Pooling/config.json", {"pooling_mode_weightedmean_tokens": True})
    assert read_pooling(tmp_path).modes == ("weightedmean",)  # sentence-transformers has it
    write(tmp_path, "1_Pooling/config.json", {})
    with pytest.raises(PoolingError, match="no pooling"):
        read_pooling(tmp_path)
    write(tmp_path, "1_Pooling/config.json", {"pooling_mode": "attention"})
    with pytest.raises(PoolingError, match="'attention' is not supported"):
        read_pooling(tmp_path)


def test_max_seq_length_sources(tmp_path):
    write(tmp_path, "config.json", {"max_position_embeddings": 512, "hidden_size": 384})
    assert read_max_seq_length(tmp_path) == 512
    write(tmp_path, "tokenizer_config.json", {"model_max_length": 1000000000000000019884624838656})
    assert read_max_seq_length(tmp_path) == 512   # the "no limit" sentinel is ignored
    write(tmp_path, "sentence_bert_config.json", {"max_seq_length": 256})
    assert read_max_seq_length(tmp_path) == 256   # sentence-transformers' value wins


def test_native_dim_and_check(tmp_path):
    write(tmp_path, "config.json", {"hidden_size": 384})
    assert read_native_dim(tmp_path, ("mean",)) == 384
    assert read_native_dim(tmp_path, ("cls", "mean")) == 768
    spec = ModelSpec("m", tmp_path, ("mean",), 384, 256, True)
    assert check_dim(spec, None) == 384 and check_dim(spec, 64) == 64
    with pytest.raises(ModelError, match="EMBEDDINGS_DIM=385 is larger than the model's 384"):
        check_dim(spec, 385)


def test_hub_ids_and_paths():
    assert not looks_like_path("BAAI/bge-small-en-v1.5")
    assert not looks_like_path("all-MiniLM-L6-v2")
    assert looks_like_path("./models/x") and looks_like_path("/abs") and looks_like_path("a/b/c")
