"""Query-document pairs into token ids as sentence-transformers 6.3's CrossEncoder makes them,
at a cost bounded by the model's window, not by the texts.

- `EncoderPairs` (BERT, XLM-R, ModernBERT): `tokenizer(query, document, truncation=
  "longest_first", max_length=L)`. Each text is tokenized only as far as truncation can
  reach (mlx_service/models/truncation.py's BoundedTokenizer.first_tokens: at least L tokens of
  complete words, exact), cut by the tokenizers library's longest_first rule, and put
  between the special tokens its post-processor adds: the same ids as the whole texts give.
- `ChatPairs` (a causal LM scored by LogitScore): the pair rendered by the folder's chat
  template (models/chat_template.py), tokenized; a rendering past the window keeps its
  first L - len(suffix) tokens and the template's suffix is put back at the end (the
  assistant prefix stays last), as sentence-transformers does. Long texts are cut before
  rendering, in windows that double until the tokens kept all lie before every cut's last
  word (exact), up to MAX_CHARS_PER_TOKEN x L characters per text (truncation.py: past
  that, a text with no whitespace is tokenized as cut: the bound on the cost).
"""
from __future__ import annotations

import re
from typing import Sequence

from mlx_service.models.chat_template import Layout, PairTemplate
from mlx_service.models.truncation import DIRECT_CHARS, MAX_CHARS_PER_TOKEN, BoundedTokenizer

_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


def longest_first(n1: int | float, n2: int | float, room: int) -> tuple[int, int]:
    """The lengths `longest_first` truncation keeps of two sequences of n1 and n2 tokens in
    `room` tokens, as the tokenizers library computes them: the shorter one whole if the
    longer still gets as much, else half each, the odd token to the longer one (to the
    second when they tie). n1, n2: the texts' whole lengths (which one is longer decides)."""
    if n1 + n2 <= room:
        return int(n1), int(n2)
    swap = n1 > n2
    short, long = (n2, n1) if swap else (n1, n2)
    long = short if short > room else max(short, room - short)
    if short + long > room:
        short, long = room // 2, room // 2 + room % 2
    return (int(long), int(short)) if swap else (int(short), int(long))


class EncoderPairs:
    def __init__(self, backend, max_length: int):
        from tokenizers import Tokenizer

        self.max_length = max_length
        self._single = BoundedTokenizer(backend, max_length)  # a copy: truncation off
        self._plain = Tokenizer.from_str(backend.to_str())
        self._plain.no_truncation()
        self._plain.no_padding()
        self.pair_specials = self._plain.num_special_tokens_to_add(True)
        self._layout = self._pair_layout()

    def _pair_layout(self) -> tuple[list[int], list[int], list[int]] | None:
        """(before A, between A and B, after B): the special tokens the post-processor puts
        around a pair, read off one pair of short texts. The tokenizers library's pair
        truncation builds every combination of both texts' overflowing parts (a pair of
        long documents: tens of gigabytes), so the pair is assembled here instead."""
        a = self._plain.encode("hello", add_special_tokens=False)
        b = self._plain.encode("world", add_special_tokens=False)
        ids = self._plain.post_process(a, b).ids
        na, nb = len(a.ids), len(b.ids)
        for i in range(len(ids) - na + 1):
            if ids[i:i + na] != a.ids:
                continue
            for j in range(i + na, len(ids) - nb + 1):
                if ids[j:j + nb] == b.ids:
                    layout = (ids[:i], ids[i + na:j], ids[j + nb:])
                    if sum(map(len, layout)) == self.pair_specials:
                        return layout
        return None

    def pairs(self, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # a query once
        first = dict(zip(texts, self._single.first_tokens(texts)))
        room = max(0, self.max_length - self.pair_specials)
        sizes: dict[str, float] = {}
        out = []
        for a, b in pairs:
            ids_a, ids_b = first[a].ids, first[b].ids
            n_a, n_b = len(ids_a), len(ids_b)
            if room % 2 and min(n_a, n_b) > room // 2:
                # Both cut to half the room: the odd token goes to the longer text, which
                # only the whole texts' lengths tell.
                n_a, n_b = (sizes.setdefault(t, self._whole_length(t, first[t])) for t in (a, b))
            keep_a, keep_b = longest_first(n_a, n_b, room)
            if self._layout is None:  # a post-processor we cannot read: its own assembly
                out.append(self._assembled(a, b, keep_a, keep_b))
                continue
            before, between, after = self._layout
            out.append(before + ids_a[:keep_a] + between + ids_b[:keep_b] + after)
        return out

    def _whole_length(self, text: str, first) -> float:
        """The text's token count: counted up to MAX_CHARS_PER_TOKEN x max_length characters,
        estimated past that from the tokens of the part already tokenized."""
        if len(text) <= DIRECT_CHARS:
            return len(first.ids)  # tokenized whole
        if len(text) <= MAX_CHARS_PER_TOKEN * self.max_length:
            return len(self._plain.encode(text, add_special_tokens=False).ids)
        covered = first.offsets[-1][1] if first.offsets else 0
        return len(first.ids) * len(text) / max(covered, 1)

    def _assembled(self, a: str, b: str, keep_a: int, keep_b: int) -> list[int]:
        enc_a, enc_b = self._single.first_tokens([a, b])  # fresh: truncate() edits them
        enc_a.truncate(keep_a)
        enc_b.truncate(keep_b)
        return self._plain.post_process(enc_a, enc_b).ids

    def singles(self, texts: Sequence[str]) -> list[list[int]]:
        return self._single.encode_batch(texts)

    def most_tokens(self, a: str, b: str | None = None) -> int:
        """An upper bound on the ids of (a, b), without tokenizing (see most_tokens in
        mlx_service/models/truncation.py)."""
        if b is None:
            return self._single.most_tokens(a)
        return min(self.max_length, self._single.most_tokens(a) + self._single.most_tokens(b)
                   + self.pair_specials)


def _last_space(text: str) -> int:
    """Offset of the whitespace before the text's last word (0: none)."""
    found = _LAST_SPACE.search(text)
    return found.start() if found else 0


class ChatPairs:
    def __init__(self, backend, template: PairTemplate, max_length: int):
        from tokenizers import Tokenizer

        self.max_length = max_length
        self.template = template
        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        self._suffix: dict[bool, list[int]] = {}
        self.cap = MAX_CHARS_PER_TOKEN * max_length

    def suffix_ids(self, instruction: bool) -> list[int]:
        if instruction not in self._suffix:
            layout = self.template.layout(instruction)
            suffix = layout.suffix if layout is not None else self._rendered_suffix(instruction)
            self._suffix[instruction] = self._tok.encode(suffix, add_special_tokens=False).ids
        return self._suffix[instruction]

    def _rendered_suffix(self, instruction: bool) -> str:
        """The text after the document when the template edits contents: what two renderings
        with different documents end with."""
        one = self.template.render("q", "first", "i" if instruction else None)
        two = self.template.render("q", "second", "i" if instruction else None)
        n = 0
        while n < min(len(one), len(two)) and one[-1 - n] == two[-1 - n]:
            n += 1
        return one[len(one) - n:] if n else ""

    def _finish(self, ids: list[int], instruction: bool) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        suffix = self.suffix_ids(instruction)
        keep = max(0, self.max_length - len(suffix))
        return (ids[:keep] + suffix)[-self.max_length:]

    def pairs(self, query: str, documents: Sequence[str],
              instruction: str | None = None) -> list[list[int]]:
        has = instruction is not None
        layout = self.template.layout(has)
        out: list[list[int] | None] = [None] * len(documents)
        texts = {"query": query, "system": instruction or ""}
        short = [i for i, d in enumerate(documents)
                 if max(len(query), len(d), len(texts["system"])) <= DIRECT_CHARS]
        if short:  # one call of the batch encoder, which lets go of the GIL
            rendered = [self.template.render(query, documents[i], instruction) for i in short]
            for i, enc in zip(short, self._tok.encode_batch(rendered)):
                out[i] = self._finish(enc.ids, has)
        for i, document in enumerate(documents):
            if out[i] is None:
                contents = dict(texts, document=document)
                out[i] = self._finish(self._bounded(layout, contents, has), has)
        return out  # type: ignore[return-value]

    def _bounded(self, layout: Layout | None, contents: dict[str, str], has: bool) -> list[int]:
        keep = max(0, self.max_length - len(self.suffix_ids(has)))
        window = DIRECT_CHARS
        while True:
            cut = {k: v[:window] for k, v in contents.items()}
            was_cut = [k for k, v in contents.items() if len(v) > window]
            if layout is None:  # the template edits contents: render the cut texts
                enc = self._tok.encode(self.template.render(
                    cut["query"], cut["document"], cut["system"] if has else None))
                cuts_at = None  # where the cut texts land is unknown: grow to the cap
            else:
                text, starts = layout.compose(cut)
                enc = self._tok.encode(text)
                cuts_at = [starts[k] + _last_space(cut[k]) for k in layout.slots
                           if k in was_cut]
            if not was_cut or cuts_at == [] or window >= self.cap:
                return enc.ids  # nothing rendered was cut, or the cost bound is reached
            if cuts_at and len(enc.ids) > self.max_length and (
                    keep == 0 or enc.offsets[keep - 1][1] <= min(cuts_at)):
                return enc.ids  # every token kept lies before each cut's last word
            window *= 2

    def most_tokens(self, query: str, document: str, instruction: str | None = None) -> int:
        """An upper bound on the ids of the pair, without tokenizing: every token covers at
        least one byte of the rendering."""
        text_bytes = sum(len(t) if t.isascii() else 4 * len(t)
                         for t in (query, document, instruction or ""))
        layout = self.template.layout(instruction is not None)
        own = len("".join(layout.literals)) if layout is not None else self.max_length
        return min(self.max_length, text_bytes + 4 * own)
