"""The tokenizer files of a model folder, read as JSON (no transformers): is there a
tokenizer, which special tokens it declares, and do they agree with the model's config.

A tokenizer from another model, or files edited by hand, give vectors that look fine and
mean nothing (or ids past the embedding table): refused before the model loads.
"""
from __future__ import annotations

import json
from pathlib import Path

# Any one of these is a tokenizer transformers can build (the fast one, or from its source).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "sentencepiece.bpe.model",
                   "spiece.model", "vocab.json")
SPECIAL_ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "bos_token", "eos_token",
                 "mask_token")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path.name} is not readable JSON ({exc})") from None


def vocabulary(folder: Path) -> dict[str, int] | None:
    """token -> id, from tokenizer.json (or vocab.txt); None when neither is there."""
    tok = _load(folder / "tokenizer.json")
    if isinstance(tok, dict):
        vocab: dict[str, int] = {}
        model = tok.get("model") or {}
        raw = model.get("vocab")
        if isinstance(raw, dict):
            vocab.update({str(k): int(v) for k, v in raw.items()})
        elif isinstance(raw, list):  # Unigram: [piece, score] in id order
            vocab.update({str(entry[0]): i for i, entry in enumerate(raw)})
        for added in tok.get("added_tokens") or []:
            if isinstance(added, dict) and "content" in added and "id" in added:
                vocab[str(added["content"])] = int(added["id"])
        return vocab
    path = folder / "vocab.txt"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return {line.rstrip("\n"): i for i, line in enumerate(lines)}
    return None


def declared_specials(folder: Path) -> dict[str, str]:
    """role -> token text, from tokenizer_config.json over special_tokens_map.json."""
    out: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        cfg = _load(folder / name)
        if not isinstance(cfg, dict):
            continue
        for role in SPECIAL_ROLES:
            value = cfg.get(role)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and value:
                out[role] = value
    return out


def tokenizer_problems(folder: Path, config: dict, pad_id_matters: bool = True) -> list[str]:
    """One sentence per disagreement between the tokenizer and the model's config
    (`pad_id_matters`: whether the config's pad_token_id must be the tokenizer's)."""
    if not has_tokenizer(folder):
        return [f"the folder has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"]
    try:
        vocab = vocabulary(folder)
        specials = declared_specials(folder)
    except ValueError as exc:
        return [str(exc)]
    if vocab is None:
        return []  # only a SentencePiece model: transformers builds it; nothing to compare
    problems = []
    for role, token in specials.items():
        if token not in vocab:
            problems.append(f"the tokenizer's {role} {token!r} is not in its vocabulary")
    pad_id = config.get("pad_token_id")
    pad = specials.get("pad_token")
    if pad_id_matters and isinstance(pad_id, int) and pad in vocab and vocab[pad] != pad_id:
        problems.append(f"config.json says pad_token_id {pad_id}, the tokenizer pads with "
                        f"{pad!r} = id {vocab[pad]}: tokenizer and model do not belong together")
    size = config.get("vocab_size")
    top = max(vocab.values(), default=-1)
    if isinstance(size, int) and top >= size:
        problems.append(f"the tokenizer has ids up to {top}, past the model's vocab_size "
                        f"{size}: tokenizer and model do not belong together")
    return problems
