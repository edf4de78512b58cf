"""Reading a model folder without MLX (mlx_service/models: architectures, weights headers,
tokenizer files, prompts, folder problems), on copies of the tiny fixture models."""
from __future__ import annotations

import json
import shutil
import struct

import pytest

from mlx_service.models.architectures import architecture_of, normalize_model_type
from mlx_service.models.folder import (ModelError, check_modules, folder_problems,
                                       read_max_seq_length, read_spec)
from mlx_service.models.prompts import PromptError, Prompts, read_prompts
from mlx_service.models.tokenizer_files import declared_specials, tokenizer_problems, vocabulary
from mlx_service.models.weights import WeightsError, header, read_weights
from tests.support import FIXTURES

TINY = FIXTURES / "tiny-models"


@pytest.fixture
def xlmr(tmp_path):
    folder = tmp_path / "xlmr"
    shutil.copytree(TINY / "xlmr-mean", folder)
    return folder


def safetensors(path, tensors: dict[str, tuple[str, list[int]]], data: bytes | None = None):
    """A safetensors file of the given (dtype, shape) tensors filled with zeros."""
    widths = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4}
    meta, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = widths[dtype]
        for d in shape:
            size *= d
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(meta).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + (b"\0" * offset if data is None else data))


def test_every_fixture_reads_as_what_it_is():
    expected = {"bert-cls": ("bert", ("cls",), 128, ["query", "document"]),
                "mpnet-mean": ("mpnet", ("mean",), 128, []),
                "distilbert-cls": ("distilbert", ("cls",), 128, []),
                "gemma3-dense": ("gemma3_text", ("mean",), 256,
                                 ["query", "document", "Classification"]),
                "qwen2-last": ("qwen2", ("lasttoken",), 256, ["query", "document"]),
                "mistral-last": ("mistral", ("lasttoken",), 256, ["query", "document"]),
                "xlmr-mean": ("xlm_roberta", ("mean",), 256, ["query", "document"]),
                "modernbert-mean": ("modernbert", ("mean",), 256, []),
                "qwen3-last": ("qwen3", ("lasttoken",), 256, ["query", "document"])}
    for name, (arch, pooling, max_len, prompts) in expected.items():
        spec = read_spec(str(TINY / name))
        assert (spec.architecture, spec.pooling, spec.max_seq_length) == (arch, pooling, max_len)
        assert spec.prompts.names() == prompts and spec.native_dim == 64
        assert spec.pooling_source == "1_Pooling/config.json"
        assert spec.describe_weights() == "float32 safetensors"
        assert folder_problems(TINY / name) == []


def test_model_type_spellings():
    assert normalize_model_type("XLM-RoBERTa") == "xlm_roberta"
    assert architecture_of("modernbert").layers == "mlx_service.models.modernbert"
    assert architecture_of("bert").library_module == "bert"
    assert architecture_of("bert").absolute_positions and architecture_of("qwen3") is not None
    assert architecture_of("gpt2") is None


def test_without_pooling_files_the_architectures_own_pooling_is_said(tmp_path):
    for name, mode in (("qwen3-last", "lasttoken"), ("xlmr-mean", "mean")):
        folder = tmp_path / name
        shutil.copytree(TINY / name, folder)
        shutil.rmtree(folder / "1_Pooling")  # what mlx-embeddings' convert writes
        spec = read_spec(str(folder))
        assert spec.pooling == (mode,) and "the architecture's own" in spec.pooling_source


def test_max_seq_length_keeps_xlmr_padding_positions_out(xlmr):
    (xlmr / "sentence_bert_config.json").unlink()
    edit = json.loads((xlmr / "tokenizer_config.json").read_text())
    edit.pop("model_max_length")
    (xlmr / "tokenizer_config.json").write_text(json.dumps(edit))
    arch = architecture_of("xlm-roberta")
    assert read_max_seq_length(xlmr, arch) == 258 - 2  # positions start at padding_idx + 1


def test_weights_headers_dtype_shards_and_damage(tmp_path):
    safetensors(tmp_path / "model.safetensors", {"a": ("BF16", [4, 4]), "b": ("BF16", [4]),
                                                 "c": ("F32", [2])})
    weights = read_weights(tmp_path)
    assert weights.dtype == "bfloat16" and weights.tensors == 3 and not weights.sharded
    (tmp_path / "model.safetensors").unlink()
    safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("F16", [8])})
    safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": ("F16", [8])})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    weights = read_weights(tmp_path)
    assert weights.sharded and weights.describe() == "float16 safetensors, 2 shards"
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match="names 1 shard"):
        read_weights(tmp_path)
    bad = tmp_path / "bad.safetensors"
    safetensors(bad, {"a": ("F32", [16])}, data=b"\0" * 10)  # 64 bytes promised
    with pytest.raises(WeightsError, match="truncated"):
        header(bad)
    bad.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(WeightsError, match="claims"):
        header(bad)
    bad.write_bytes(b"\1\0")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        header(bad)


def test_weights_in_a_form_the_service_cannot_read(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"torch pickle")
    with pytest.raises(WeightsError, match="only in pytorch_model.bin"):
        read_weights(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(WeightsError, match="no weights"):
        read_weights(tmp_path)


def test_tokenizer_files_against_the_config(xlmr):
    vocab = vocabulary(xlmr)
    specials = declared_specials(xlmr)
    assert vocab[specials["pad_token"]] == 1 and specials["cls_token"] == "<s>"
    assert tokenizer_problems(xlmr, {"pad_token_id": 1, "vocab_size": 3000}) == []
    assert "pad_token_id 0" in tokenizer_problems(xlmr, {"pad_token_id": 0})[0]
    assert "past the model's vocab_size 100" in tokenizer_problems(xlmr, {"vocab_size": 100})[0]
    # Where the forward pass never reads pad_token_id (BERT), a different one is harmless.
    assert tokenizer_problems(xlmr, {"pad_token_id": 0}, pad_id_matters=False) == []
    bert_vocab = vocabulary(TINY / "bert-cls")
    assert bert_vocab["[PAD]"] == 0 and bert_vocab["[CLS]"] == 101
    (xlmr / "tokenizer.json").unlink()
    assert "no tokenizer" in tokenizer_problems(xlmr, {})[0]


def test_prompts_as_sentence_transformers_applies_them(xlmr):
    prompts = read_prompts(xlmr)
    assert prompts.resolve("query") == ("query", "query: ")
    assert prompts.resolve(None) == (None, "")
    with pytest.raises(PromptError, match="unknown prompt_name 'q'; this model's prompts: "
                                          "'query', 'document'"):
        prompts.resolve("q")
    with_default = Prompts({"query": "Q: ", "document": ""}, default_name="query")
    assert with_default.resolve(None) == ("query", "Q: ")
    assert with_default.resolve("document") == ("document", "")
    cfg = json.loads((xlmr / "config_sentence_transformers.json").read_text())
    cfg["default_prompt_name"] = "nope"
    (xlmr / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    with pytest.raises(PromptError, match="default_prompt_name 'nope'"):
        read_prompts(xlmr)


def test_a_bert_whose_config_pad_id_differs_from_its_tokenizers_is_served(tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(TINY / "bert-cls", folder)  # like multilingual-e5-small: 0 vs <pad> = 1
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pad_token_id"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    assert folder_problems(folder) == [] and read_spec(str(folder)).architecture == "bert"


def test_modules_the_service_does_not_run_are_refused(xlmr):
    modules = json.loads((xlmr / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_LSTM",
                       "type": "sentence_transformers.models.LSTM"})
    (xlmr / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match="has a LSTM module"):
        check_modules(xlmr)
    assert any("LSTM" in p for p in folder_problems(xlmr))


def test_dense_modules_are_read_in_order_with_their_activation_and_bias(tmp_path):
    gemma = read_spec(str(TINY / "gemma3-dense")).modules
    assert [(d.path, d.in_features, d.out_features, d.bias, d.activation) for d in gemma.dense] \
        == [("2_Dense", 64, 256, False, "identity"), ("3_Dense", 256, 64, False, "identity")]
    assert gemma.normalize
    labse = read_spec(str(TINY / "bert-dense-tanh"))
    assert labse.native_dim == 48 and labse.modules.describe() == ["Dense 64->48 tanh",
                                                                   "Normalize"]
    folder = tmp_path / "no-normalize"
    shutil.copytree(TINY / "bert-dense-tanh", folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:-1]))
    assert read_spec(str(folder)).modules.normalize is False
    # A Dense before Pooling runs on tokens, which the service does not do.
    (folder / "modules.json").write_text(json.dumps([modules[0], modules[2], modules[1]]))
    assert any("comes before Pooling" in p for p in folder_problems(folder))


def test_folder_problems_lists_every_problem_once(xlmr):
    cfg = json.loads((xlmr / "config.json").read_text())
    cfg.update(model_type="t5", pad_token_id=2)
    (xlmr / "config.json").write_text(json.dumps(cfg))
    (xlmr / "model.safetensors").write_bytes(b"junk")
    problems = folder_problems(xlmr)
    assert len(problems) == 3, problems
    assert "'t5' is not supported" in problems[0]
    assert "not a safetensors file" in problems[1] and "pad_token_id 2" in problems[2]
    with pytest.raises(ModelError, match=r"^model .*xlmr: model_type 't5' is not supported"):
        read_spec(str(xlmr))


def test_config_json_is_read_once_on_the_way_to_a_spec(monkeypatch):
    """The spec keeps config.json as read (the loader builds the layers from it)."""
    from pathlib import Path
    reads = []
    real = Path.read_text

    def counting(self, *args, **kwargs):
        if self.name == "config.json" and self.parent.name == "gemma3-dense":
            reads.append(self)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "read_text", counting)
    spec = read_spec(str(TINY / "gemma3-dense"))
    assert len(reads) == 1 and spec.config["model_type"] == "gemma3_text"
