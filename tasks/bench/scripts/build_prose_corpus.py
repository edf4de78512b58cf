"""Build tasks/bench/data/prose.json: real English prose of mixed lengths, from files every Debian has.

    python3 tasks/bench/scripts/build_prose_corpus.py   # rewrites ../data/prose.json and prose.sha256

The source is /usr/share/common-licenses (package base-files, on every Debian and Ubuntu
machine): the paragraphs of the license texts, whitespace folded, exact duplicates dropped
(GFDL-1.2/1.3 and LGPL-2/2.1 share many), in file-name order. Long texts are rare there, so
runs of consecutive paragraphs of one file are also joined into texts of 180-300 words
(longer than the model's 256 tokens: they exercise truncation, as long documents do).
Standard library only. The checked-in file is what `inv bench` uses and checks against its
sha256. Of all the texts found, KEEP evenly spaced ones are kept; rebuilding on another release of base-files may give other texts (the source files'
own sha256 are recorded in it).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

SOURCE = Path("/usr/share/common-licenses")
DATA = Path(__file__).resolve().parent.parent / "data"
OUT, DIGEST = DATA / "prose.json", DATA / "prose.sha256"
MIN_WORDS = 3                  # drop stray headings ("Preamble")
JOIN_WORDS = (180, 300)        # a joined long text's length
KEEP = 512                     # texts kept, evenly spaced over all found (lengths stay mixed)


def paragraphs(text: str) -> list[str]:
    parts = (re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text))
    return [p for p in parts if len(p.split()) >= MIN_WORDS]


def joined(paras: list[str], low: int, high: int) -> list[str]:
    """Consecutive paragraphs glued until low..high words; a run that overshoots is dropped."""
    out, run = [], []
    for para in paras:
        run.append(para)
        words = sum(len(p.split()) for p in run)
        if words >= low:
            if words <= high:
                out.append(" ".join(run))
            run = []
    return out


def build(source: Path = SOURCE) -> dict:
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.is_symlink())
    texts, seen, sources = [], set(), {}
    for path in files:
        raw = path.read_text(encoding="utf-8", errors="replace")
        sources[path.name] = hashlib.sha256(raw.encode()).hexdigest()
        paras = paragraphs(raw)
        for text in paras + joined(paras, *JOIN_WORDS):
            if text not in seen:
                seen.add(text)
                texts.append(text)
    if len(texts) > KEEP:
        texts = [texts[i * len(texts) // KEEP] for i in range(KEEP)]
    return {"description": "Benchmark prose for `inv bench`: paragraphs of the license texts in "
                           f"{source} (and runs of them joined to {JOIN_WORDS[0]}-{JOIN_WORDS[1]} "
                           # The script's path when the checked-in file was built: it is part of
                           # the file, so naming the new place would change its sha256.
                           "words), built by bench/build_prose_corpus.py. Do not edit by hand.",
            "source": str(source), "source_sha256": sources, "texts": texts}


def main() -> int:
    doc = build()
    if len(doc["texts"]) < 500:
        print(f"only {len(doc['texts'])} texts found in {SOURCE}", file=sys.stderr)
        return 1
    data = (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()
    OUT.write_bytes(data)
    DIGEST.write_text(f"{hashlib.sha256(data).hexdigest()}  {OUT.name}\n")
    words = sorted(len(t.split()) for t in doc["texts"])
    print(f"{OUT.name}: {len(words)} texts, {words[0]}-{words[-1]} words "
          f"(median {words[len(words) // 2]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
