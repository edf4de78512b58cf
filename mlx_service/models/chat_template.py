"""A causal-LM reranker's chat template, rendered as transformers renders it (Jinja2 in a
sandbox, trim_blocks and lstrip_blocks, loop controls), for the pair sentence-transformers
scores: messages with the roles `query` and `document`, an instruction as a `system` message.

`layout` splits the rendering into the template's own text and the slots the contents go
into (found by rendering marker strings), so that a long document can be cut before it is
tokenized (models/pair_tokens.py) and the template's suffix (what follows the last slot:
Qwen3-Reranker's "<|im_end|>\\n<|im_start|>assistant\\n<think>...") is known.
"""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("query", "document")
# Markers that no template changes unless it edits the content itself: mixed case and
# surrounding whitespace, so that a template that trims or recases content is noticed and
# rendered with the real texts instead.
MARKERS = {"system": " \n\x02Instruction-Slot\x03\n ", "query": " \n\x02Query-Slot\x03\n ",
           "document": " \n\x02Document-Slot\x03\n "}


class TemplateError(ValueError):
    """The chat template cannot render a query-document pair; the message says why."""


@dataclass(frozen=True)
class Layout:
    """The rendering as literal text around slots: literals[0] slot[0] literals[1] ..."""
    literals: tuple[str, ...]
    slots: tuple[str, ...]

    @property
    def suffix(self) -> str:
        return self.literals[-1]

    def compose(self, contents: dict[str, str]) -> tuple[str, dict[str, int]]:
        """(the rendered text, each slot's start offset in it)."""
        parts, starts, at = [self.literals[0]], {}, len(self.literals[0])
        for slot, literal in zip(self.slots, self.literals[1:]):
            starts[slot] = at
            parts += [contents[slot], literal]
            at += len(contents[slot]) + len(literal)
        return "".join(parts), starts


def messages(query: str, document: str, instruction: str | None) -> list[dict]:
    out = [{"role": "system", "content": instruction}] if instruction is not None else []
    return out + [{"role": "query", "content": query}, {"role": "document", "content": document}]


class PairTemplate:
    def __init__(self, source: str):
        from jinja2 import TemplateError as JinjaError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(f"the chat template refused the pair: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        try:
            self._template = env.from_string(source)
        except JinjaError as exc:
            raise TemplateError(f"the chat template is not valid Jinja2: {exc}") from None
        self._jinja_error = JinjaError
        # A chat model's own template (user/assistant turns) either drops messages of other
        # roles or prints them as turns of a conversation: neither is a reranker's prompt.
        unnamed = [r for r in ROLES if f"'{r}'" not in source and f'"{r}"' not in source]
        if unnamed:
            raise TemplateError(f"the chat template does not render the pair roles 'query' and "
                                f"'document' (it never names {' or '.join(map(repr, unnamed))}): "
                                "it is a chat model's template, not a reranker's")
        self._layouts = {False: self._split(False), True: self._split(True)}

    def render(self, query: str, document: str, instruction: str | None = None) -> str:
        try:
            # add_generation_prompt: the score is read where the answer would start.
            return self._template.render(messages=messages(query, document, instruction),
                                         add_generation_prompt=True)
        except TemplateError:
            raise
        except self._jinja_error as exc:
            raise TemplateError(f"the chat template cannot render the pair: {exc}") from None
        except Exception as exc:  # a template's own error (KeyError on a role it lacks, ...)
            raise TemplateError(f"the chat template cannot render messages with the roles "
                                f"'query' and 'document' ({type(exc).__name__}: {exc})") from None

    def layout(self, instruction: bool) -> Layout | None:
        """The rendering's literals and slots, or None when the template edits the contents
        (then each pair is rendered whole)."""
        return self._layouts[instruction]

    def _split(self, instruction: bool) -> Layout | None:
        text = self.render(MARKERS["query"], MARKERS["document"],
                           MARKERS["system"] if instruction else None)
        missing = [r for r in ROLES if MARKERS[r].strip() not in text]
        if missing:
            raise TemplateError(f"the chat template does not render the pair roles 'query' and "
                                f"'document' (no {', '.join(repr(r) for r in missing)} message "
                                "in its output): it is not a reranker's template")
        wanted = ("system",) + ROLES if instruction else ROLES
        found = sorted((text.find(MARKERS[s]), s) for s in wanted)
        if any(at < 0 or text.count(MARKERS[s]) != 1 for at, s in found):
            return None
        literals, slots, at = [], [], 0
        for start, slot in found:
            literals.append(text[at:start])
            slots.append(slot)
            at = start + len(MARKERS[slot])
        literals.append(text[at:])
        return Layout(tuple(literals), tuple(slots))
