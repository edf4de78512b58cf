"""Tokenizing with a cost bounded by max_seq_length, not by the text, and exactly as full
truncation would.

A text of a megabyte needs only its first few hundred tokens. Tokenizing all of it (what
`truncation=True` does) costs time and memory in proportion to the text. Instead:

1. Cheap, exact reductions, each checked against the tokenizer when it is built (never
   assumed): a run of characters the tokenizer treats as one space becomes one space, and (for
   WordPiece, whose over-long words become one [UNK]) a run of ASCII letters and digits longer
   than that limit is cut to one character past it. Both are regex passes at C speed.
2. A window of the text's characters that doubles until the tokens of its complete words (all but the
   last, which the window may have cut) are more than truncation keeps. Pre-tokenizers split
   text into words locally, so those tokens are the full text's first tokens. The window
   stops at MAX_CHARS_PER_TOKEN characters per token of max_length: only a text with no
   whitespace that long (megabytes of CJK for a BPE or Unigram tokenizer) gets there.

The tokens kept are then wrapped with the model's special tokens by its own post-processor.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

# Texts this short are tokenized whole: windowing would not save anything.
DIRECT_CHARS = 2048
# The bound on the cost: a window that reaches this many (reduced) characters per token of
# max_length stops growing, even if its last word is still not complete. Only one word
# that long (no whitespace at all: a megabyte of CJK for a BPE or Unigram tokenizer) gets
# there; its tokens are then the cut word's, near its first max_length tokens.
MAX_CHARS_PER_TOKEN = 64
# Python's idea of whitespace, plus the separators Unicode puts in other categories; each is
# kept only if the tokenizer really treats a run of it as a single space.
_SPACE_CANDIDATES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\u200b\u3000"


class BoundedTokenizer:
    """Wraps a `tokenizers.Tokenizer`, with truncation and padding switched off: on a copy, or
    on the tokenizer itself when the caller hands it over (`own`: nobody else uses it, so a
    large one is not serialised and parsed again)."""

    def __init__(self, tokenizer, max_length: int, own: bool = False):
        from tokenizers import Tokenizer

        self._tok = tokenizer if own else Tokenizer.from_str(tokenizer.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        self.max_length = max_length
        # Room for the text's own tokens once [CLS]/[SEP] (or the model's equivalent) are added.
        self.specials = self._tok.num_special_tokens_to_add(False)
        self.budget = max(1, max_length - self.specials)
        self.max_chars = MAX_CHARS_PER_TOKEN * max_length
        self._space_run = _space_run_pattern(self._tok)
        self._long_word = _long_word_rule(self._tok)

    def most_tokens(self, text: str) -> int:
        """An upper bound on len(encode_batch([text])[0]) without tokenizing: every token covers at
        least one byte of the text (WordPiece, BPE and Unigram alike), and a character is at
        most 4 bytes. Admission control reserves this before it pays for tokenizing."""
        chars = len(text) if text.isascii() else 4 * len(text)
        return min(self.max_length, chars + self.specials)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated, with the model's special tokens."""
        return [self._finish(enc) for enc in self.first_tokens(texts)]

    def first_tokens(self, texts: Sequence[str]) -> list:
        """Per text, an Encoding without special tokens whose first `budget` tokens are the
        full text's (a pair's truncation keeps no more than that of either text).

        Short texts in one call of the library's batch encoder, which lets go of the GIL
        while it works (one call per text would hold it, between calls, for all of them)."""
        out: list = [None] * len(texts)
        short = [i for i, t in enumerate(texts) if len(t) <= DIRECT_CHARS]
        if short:
            for i, enc in zip(short, self._tok.encode_batch([texts[i] for i in short],
                                                            add_special_tokens=False)):
                out[i] = enc
        for i, text in enumerate(texts):
            if out[i] is None:
                out[i] = self._window(text)
        return out

    def _finish(self, enc) -> list[int]:
        if len(enc.ids) > self.budget:
            enc.truncate(self.budget)
        return self._tok.post_process(enc).ids

    def reduce(self, text: str) -> str:
        """The text with the checked, token-preserving reductions applied."""
        if self._space_run is not None:
            text = self._space_run.sub(" ", text)
        if self._long_word is not None:
            pattern, keep = self._long_word
            text = pattern.sub(lambda m: m.group()[:keep], text)
        return text

    def _window(self, text: str):
        # The window grows by chunks, each reduced on its own: a run or word cut between two
        # chunks stays a run (two spaces read as one) or a word past the limit, and whatever
        # the window's end cuts is its last word, which does not count until it is complete.
        reduced, done, window = "", 0, DIRECT_CHARS
        while True:
            reduced += self.reduce(text[done:window])
            done = min(window, len(text))
            enc = self._tok.encode(reduced, add_special_tokens=False)
            if done >= len(text):
                return enc
            words = enc.word_ids
            last = words[-1] if words else None
            complete = sum(1 for w in words if w != last)  # word ids only grow
            if complete >= self.budget or len(reduced) >= self.max_chars:
                return enc
            window *= 2


def _tokens(tok, text: str) -> list[str]:
    return tok.encode(text, add_special_tokens=False).tokens


def _space_run_pattern(tok) -> re.Pattern | None:
    """A regex for runs (2+) of characters that the tokenizer reads as one space, each one
    checked: alone, repeated, between words and at either end."""
    reference = [_tokens(tok, s) for s in ("a b", "a", "b")]
    kept = []
    for ch in _SPACE_CANDIDATES:
        probes = [_tokens(tok, s) for s in (f"a{ch}b", f"a{ch * 3}b", f"{ch * 2}a", f"b{ch * 2}")]
        if probes == [reference[0], reference[0], reference[1], reference[2]]:
            kept.append(ch)
    if " " not in kept:
        return None  # e.g. byte-level BPE: spaces are part of tokens, runs are not one space
    return re.compile("[" + re.escape("".join(kept)) + "]{2,}")


def _long_word_rule(tok) -> tuple[re.Pattern, int] | None:
    """(pattern, keep) for WordPiece: a word longer than max_input_chars_per_word is one
    [UNK] whatever its length, so a run of ASCII letters/digits (no punctuation, no accents,
    no case change that alters length) past that limit can be cut just past it."""
    model = json.loads(tok.to_str()).get("model", {})
    limit = model.get("max_input_chars_per_word")
    unk = model.get("unk_token")
    if model.get("type") != "WordPiece" or not isinstance(limit, int) or not unk:
        return None
    keep = limit + 1
    for word in ("x" * keep, "x" * (keep + 37), "Ab9" * (keep // 3 + 5)):
        if _tokens(tok, word) != [unk]:
            return None
    return re.compile(f"[A-Za-z0-9]{{{keep + 1},}}"), keep
