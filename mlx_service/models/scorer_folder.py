"""A reranker or classifier folder (a sentence-transformers CrossEncoder), read without MLX:
what it is (ScorerSpec) and every reason it cannot be served (`scorer_problems`), from its
JSON files and safetensors headers only, as models/folder.py does for embedding models.

Kinds served (sentence-transformers 6.3 scores each this way):
- sequence classification: BERT (pooler + classifier), XLM-R/RoBERTa (classifier.dense + tanh
  + out_proj on <s>), ModernBERT (head on the cls or mean state, then classifier);
- causal LM + LogitScore: Qwen3 (logit[true] - logit[false] at the last position of the chat
  template's rendering).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlx_service.models.architectures import Architecture, architecture_of
from mlx_service.models.folder import (ModelError, ModelSpec, looks_like_path,
                                       read_max_seq_length, read_quantization)
from mlx_service.models.roles import architectures, embeddings_as_reranker
from mlx_service.models.tokenizer_files import tokenizer_problems, vocabulary
from mlx_service.models.weights import Weights, WeightsError, header, read_weights

SEQUENCE_CLASSIFICATION = "sequence-classification"
CAUSAL_LM_LOGIT_SCORE = "causal-lm-logit-score"


@dataclass(frozen=True)
class ScorerKind:
    architecture: str          # our architecture (models/architectures.py) for the encoder
    kind: str
    head: str                  # heads.py's name for the head
    needs: tuple[str, ...]     # head tensors the folder must hold (as published)


# The transformers class names config.json's "architectures" gives, and what each needs.
SCORERS = {
    "BertForSequenceClassification": ScorerKind(
        "bert", SEQUENCE_CLASSIFICATION, "bert",
        ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
         "classifier.bias")),
    "XLMRobertaForSequenceClassification": ScorerKind(
        "xlm_roberta", SEQUENCE_CLASSIFICATION, "roberta",
        ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
         "classifier.out_proj.bias")),
    "RobertaForSequenceClassification": ScorerKind(
        "xlm_roberta", SEQUENCE_CLASSIFICATION, "roberta",
        ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
         "classifier.out_proj.bias")),
    "ModernBertForSequenceClassification": ScorerKind(
        "modernbert", SEQUENCE_CLASSIFICATION, "modernbert",
        ("head.dense.weight", "head.norm.weight", "classifier.weight")),
    "Qwen3ForCausalLM": ScorerKind("qwen3", CAUSAL_LM_LOGIT_SCORE, "logit-score", ()),
}
# sentence-transformers' activation_fn (a torch class path) -> ours.
ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity", "Tanh": "tanh",
               "Softmax": "softmax"}
# sentence-transformers modules a CrossEncoder folder may list.
SERVED_MODULES = ("Transformer", "LogitScore")
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def supported_scorers() -> str:
    return ", ".join(sorted(SCORERS)) + " (with a LogitScore module)"


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    path: Path
    hf_architecture: str      # e.g. BertForSequenceClassification
    architecture: str         # the encoder's, in models/architectures.py
    kind: str                 # SEQUENCE_CLASSIFICATION or CAUSAL_LM_LOGIT_SCORE
    head: str
    num_labels: int
    labels: tuple[str, ...]
    activation: str           # sigmoid, identity, tanh or softmax
    activation_source: str
    max_length: int
    local: bool = True
    weights: Weights | None = None
    quantization: dict | None = None
    classifier_pooling: str = "cls"   # ModernBERT's: cls or mean
    true_token_id: int | None = None  # LogitScore
    false_token_id: int | None = None
    chat_template: str | None = None
    tied_embeddings: bool = False     # causal LM: the LM head is the embedding table
    config: dict = field(default_factory=dict, compare=False, repr=False)

    def model_spec(self) -> ModelSpec:
        """The encoder as models/loading.py and models/embedder.py take it: its token states
        are what the head reads (the pooling here only serves the precision self-check)."""
        pooling = ("lasttoken",) if self.kind == CAUSAL_LM_LOGIT_SCORE else ("mean",)
        hidden = int(self.config.get("hidden_size") or 0)
        return ModelSpec(name=self.name, path=self.path, pooling=pooling, native_dim=hidden,
                         max_seq_length=self.max_length, local=self.local,
                         architecture=self.architecture, pooling_source="the reranker's head",
                         weights=self.weights, quantization=self.quantization)

    def describe_weights(self) -> str:
        return self.model_spec().describe_weights()

    def describe(self) -> str:
        """One line, for the log and --check-model."""
        labels = ", ".join(self.labels)
        return (f"{self.hf_architecture} ({self.kind}), {self.num_labels} label(s) [{labels}], "
                f"activation {self.activation}, max_length {self.max_length}, "
                f"{self.describe_weights()}")


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path.name}: {exc}") from None


def resolve_scorer(model: str) -> tuple[str, Path, bool]:
    """(name, folder, local) for RERANK_MODEL: a folder, or a hub id fetched once."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve().name, path.resolve(), True
    if path.exists():
        raise ModelError(f"RERANK_MODEL={model!r} is a file; name the model's folder")
    if looks_like_path(model):
        raise ModelError(f"RERANK_MODEL={model!r}: no such model folder")
    from huggingface_hub import snapshot_download  # hub ids only
    try:
        folder = snapshot_download(repo_id=model, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "1_LogitScore/*"])
    except Exception as exc:  # any hub failure is a startup error with its reason
        raise ModelError(f"RERANK_MODEL={model!r}: cannot fetch from the hub: {exc}") from None
    return model, Path(folder), False


def read_kind(folder: Path, cfg: dict) -> tuple[str, ScorerKind, Architecture]:
    names = architectures(folder)
    for name in names:
        kind = SCORERS.get(name)
        if kind is not None:
            arch = architecture_of(kind.architecture)
            return name, kind, arch
    named = ", ".join(names) or f"model_type {cfg.get('model_type')!r}"
    raise ModelError(f"{named} is not a reranker architecture this service runs "
                     f"(supported: {supported_scorers()})")


def check_modules(folder: Path) -> None:
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list):
        return
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if kind and not kind.endswith(SERVED_MODULES):
            raise ModelError(f"modules.json has a {kind.rsplit('.', 1)[-1]} module, which the "
                             f"reranker does not run (it runs {', '.join(SERVED_MODULES)})")


def head_shapes(weights: Weights) -> dict[str, list[int]]:
    """name -> shape for every tensor, from the safetensors headers."""
    shapes: dict[str, list[int]] = {}
    for path in weights.files:
        for name, info in header(path).items():
            if name != "__metadata__":
                shapes[name] = [int(d) for d in info["shape"]]
    return shapes


def find_tensor(names, wanted: str) -> str | None:
    """The published name of `wanted`, with or without a wrapper's prefix on the encoder."""
    if wanted in names:
        return wanted
    bare = wanted.split(".", 1)[1] if wanted.startswith(("bert.", "model.")) else None
    return bare if bare in names else None


def check_head(kind: ScorerKind, cfg: dict, weights: Weights) -> None:
    missing = [n for n in kind.needs if find_tensor(weights.names, n) is None]
    if kind.kind == CAUSAL_LM_LOGIT_SCORE and "lm_head.weight" not in weights.names:
        if not cfg.get("tie_word_embeddings"):
            missing.append("lm_head.weight")
    if missing:
        raise ModelError(f"the weights hold no classifier head ({', '.join(missing)} missing): "
                         "a bare encoder scores nothing; use the reranker's own folder")


def read_num_labels(kind: ScorerKind, weights: Weights) -> int:
    if kind.kind == CAUSAL_LM_LOGIT_SCORE:
        return 1  # logit[true] - logit[false]
    out = {"bert": "classifier.weight", "roberta": "classifier.out_proj.weight",
           "modernbert": "classifier.weight"}[kind.head]
    return head_shapes(weights)[find_tensor(weights.names, out)][0]


def read_labels(cfg: dict, num_labels: int) -> tuple[str, ...]:
    id2label = cfg.get("id2label") or {}
    try:
        named = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        named = {}
    return tuple(named.get(i, f"LABEL_{i}") for i in range(num_labels))


def read_activation(folder: Path, cfg: dict, num_labels: int) -> tuple[str, str]:
    """(activation, where it came from): config_sentence_transformers.json's activation_fn
    (older folders: config.json's sentence_transformers.activation_fn), else
    sentence-transformers' default (Sigmoid for one label, Identity for several)."""
    st = _json(folder / "config_sentence_transformers.json") or {}
    found = st.get("activation_fn") if isinstance(st, dict) else None
    source = "config_sentence_transformers.json"
    if not found:
        found = (cfg.get("sentence_transformers") or {}).get("activation_fn")
        source = "config.json"
    if not found:
        return ("sigmoid" if num_labels == 1 else "identity"), \
            f"sentence-transformers' default for {num_labels} label(s)"
    short = str(found).rsplit(".", 1)[-1]
    if short not in ACTIVATIONS:
        raise ModelError(f"{source}'s activation_fn {found!r} is not one this service applies "
                         f"(it applies {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[short], source


def read_chat_template(folder: Path) -> str | None:
    path = folder / CHAT_TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    tok = _json(folder / "tokenizer_config.json") or {}
    template = tok.get("chat_template") if isinstance(tok, dict) else None
    if isinstance(template, list):  # [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def read_logit_score(folder: Path, cfg: dict) -> tuple[int, int]:
    modules = _json(folder / "modules.json") or []
    sub = next((str(m.get("path") or "1_LogitScore") for m in modules
                if isinstance(m, dict) and str(m.get("type", "")).endswith("LogitScore")),
               "1_LogitScore")
    conf = _json(folder / sub / "config.json")
    if not isinstance(conf, dict):
        raise ModelError(f"{sub}/config.json is missing: the true/false token ids that score "
                         "a causal LM are in it")
    size = cfg.get("vocab_size")
    vocab = vocabulary(folder) or {}
    top = max(vocab.values(), default=-1)
    ids = []
    for key in ("true_token_id", "false_token_id"):
        value = conf.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelError(f"{sub}/config.json's {key} is not a token id: {value!r}")
        if value < 0 or (isinstance(size, int) and value >= size) or (top >= 0 and value > top):
            raise ModelError(f"{sub}/config.json's {key} {value} is outside the vocabulary "
                             f"(vocab_size {size}, the tokenizer's ids up to {top})")
        ids.append(value)
    return ids[0], ids[1]


def check_chat_template(template: str | None) -> None:
    from mlx_service.models.chat_template import PairTemplate, TemplateError
    if template is None:
        raise ModelError(f"the folder has no chat template ({CHAT_TEMPLATE_FILE}, or "
                         "tokenizer_config.json's chat_template): a causal-LM reranker is "
                         "scored on the template's rendering of the pair")
    try:
        PairTemplate(template)
    except TemplateError as exc:
        raise ModelError(str(exc)) from None


def spec_from_scorer_folder(name: str, folder: Path, local: bool) -> ScorerSpec:
    wrong_role = embeddings_as_reranker(folder)
    if wrong_role:
        raise ModelError(wrong_role)
    cfg = _json(folder / "config.json")
    if not isinstance(cfg, dict):
        raise ModelError(f"{folder} has no config.json: not a model folder")
    hf_name, kind, arch = read_kind(folder, cfg)
    check_modules(folder)
    try:
        weights = read_weights(folder)
    except WeightsError as exc:
        raise ModelError(str(exc)) from None
    check_head(kind, cfg, weights)
    quantization = read_quantization(cfg)
    problems = tokenizer_problems(folder, cfg, arch.pad_id_matters)
    if problems:
        raise ModelError(problems[0])
    num_labels = read_num_labels(kind, weights)
    activation, source = read_activation(folder, cfg, num_labels)
    extra: dict = {}
    if kind.kind == CAUSAL_LM_LOGIT_SCORE:
        extra["true_token_id"], extra["false_token_id"] = read_logit_score(folder, cfg)
        extra["chat_template"] = read_chat_template(folder)
        check_chat_template(extra["chat_template"])
        extra["tied_embeddings"] = "lm_head.weight" not in weights.names
    pooling = str(cfg.get("classifier_pooling") or "cls")
    if kind.head == "modernbert" and pooling not in ("cls", "mean"):
        raise ModelError(f"config.json's classifier_pooling {pooling!r} is not cls or mean")
    return ScorerSpec(name=name, path=folder, hf_architecture=hf_name,
                      architecture=arch.name, kind=kind.kind, head=kind.head,
                      num_labels=num_labels, labels=read_labels(cfg, num_labels),
                      activation=activation, activation_source=source,
                      max_length=read_max_seq_length(folder, arch), local=local,
                      weights=weights, quantization=quantization, classifier_pooling=pooling,
                      config=cfg, **extra)


def read_scorer_spec(model: str) -> ScorerSpec:
    """RERANK_MODEL -> its ScorerSpec, or ModelError with one sentence."""
    name, folder, local = resolve_scorer(model)
    try:
        return spec_from_scorer_folder(name, folder, local)
    except ModelError as exc:
        raise ModelError(f"reranker {folder}: {exc}") from None


def scorer_problems(folder: Path) -> list[str]:
    """Why the folder cannot be served as RERANK_MODEL (empty: it can), one sentence each.
    The first refusal found is the one said: the checks build on each other."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    try:
        spec_from_scorer_folder(folder.name, folder, True)
    except ModelError as exc:
        return [str(exc)]
    return []
