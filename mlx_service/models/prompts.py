"""Instruction prompts, from the model's config_sentence_transformers.json, as
sentence-transformers applies them: `prompt_name` picks a prompt, which is put in front of
each text before tokenizing; `default_prompt_name` applies when the request names none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE = "config_sentence_transformers.json"


class PromptError(ValueError):
    """A prompt the model does not have (the client's mistake), or an unreadable file."""


@dataclass(frozen=True)
class Prompts:
    prompts: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None

    def names(self) -> list[str]:
        return list(self.prompts)

    def resolve(self, name: str | None) -> tuple[str | None, str]:
        """(the prompt's name, its text) for a request's `prompt_name` (None: the default)."""
        if name is None:
            name = self.default_name
            if name is None:
                return None, ""
        if name not in self.prompts:
            known = ", ".join(repr(n) for n in self.prompts) or "none"
            raise PromptError(f"unknown prompt_name {name!r}; this model's prompts: {known}")
        return name, self.prompts[name]

    def describe(self) -> dict:
        return {"names": self.names(), "default": self.default_name}


def read_prompts(folder: Path) -> Prompts:
    path = folder / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        return Prompts()
    except (OSError, ValueError) as exc:
        raise PromptError(f"cannot read {CONFIG_FILE}: {exc}") from None
    if not isinstance(cfg, dict):
        raise PromptError(f"{CONFIG_FILE} is not a JSON object")
    prompts = cfg.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in prompts.items()):
        raise PromptError(f"{CONFIG_FILE}: 'prompts' must map names to strings")
    default = cfg.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise PromptError(f"{CONFIG_FILE}: default_prompt_name {default!r} is not one of its "
                          f"prompts ({', '.join(prompts) or 'none'})")
    return Prompts(dict(prompts), default)
