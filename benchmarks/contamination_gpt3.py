"""GPT-3 / lm-eval style 13-gram contamination baseline, written here from its description.

    .venv/bin/python benchmarks/contamination_gpt3.py --corpus 'DEV/corpus/*.parquet'
        --bench DEV/index/gsm8k.parquet [--bench ...] --out DIR [--n 13]

The rule [GPT-3, Brown et al. 2020, App. C; lm-evaluation-harness `docs/decontamination.md`:
"a test document as contaminated if any N-gram overlap existed with any training
document ... we just used 13"; normalisation as in our algorithms sheet section 3.1]:
lower-case, delete punctuation (Python's `string.punctuation`), split on whitespace; a
corpus document is dirty when it shares at least one 13-gram with any benchmark item's text.
Items shorter than 13 words have no 13-gram and can never match (lm-eval's rule; NeMo's
whole-sequence rule for short tasks is not part of it). The item reported for a dirty
document is the one sharing the most 13-grams with it (ties: first indexed).

Writes DIR/flags.parquet (id, benchmark, matched_id, score = shared 13-grams) and
DIR/timing.json: CPU seconds (`time.process_time`) of building the index and of the scan,
and the index's memory as the growth of this process's resident set while building it.
"""

from __future__ import annotations

import argparse
import glob
import json
import string
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PUNCT = str.maketrans("", "", string.punctuation)


def words(text: str) -> list[str]:
    return text.lower().translate(PUNCT).split()


def ngram_hashes(tokens: list[str], n: int) -> list[int]:
    return [hash(tuple(tokens[i:i + n])) for i in range(len(tokens) - n + 1)]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def build_index(items: list[str], n: int) -> dict[int, int]:
    """13-gram hash -> the first item holding it."""
    index: dict[int, int] = {}
    for k, text in enumerate(items):
        for h in ngram_hashes(words(text), n):
            index.setdefault(h, k)
    return index


def scan(texts: list[str], index: dict[int, int], n: int) -> list[tuple[int, int, int]]:
    """(doc, best item, shared 13-grams) of every dirty document."""
    out = []
    for d, text in enumerate(texts):
        hits = Counter(index[h] for h in ngram_hashes(words(text), n) if h in index)
        if hits:
            item, count = max(hits.items(), key=lambda kv: (kv[1], -kv[0]))
            out.append((d, item, count))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--bench", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=13)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = pa.concat_tables(pq.read_table(f, columns=["bench_id", "benchmark", "text"])
                             for f in args.bench)
    corpus = pa.concat_tables(pq.read_table(f, columns=["id", "text"])
                              for f in sorted(glob.glob(args.corpus)))
    items = bench["text"].to_pylist()
    ids, texts = corpus["id"].to_pylist(), corpus["text"].to_pylist()
    rss0, c0 = rss_bytes(), time.process_time()
    index = build_index(items, args.n)
    c1, rss1 = time.process_time(), rss_bytes()
    dirty = scan(texts, index, args.n)
    c2 = time.process_time()
    item_ids, benches = bench["bench_id"].to_pylist(), bench["benchmark"].to_pylist()
    pq.write_table(pa.table({"id": [ids[d] for d, _, _ in dirty],
                             "benchmark": [benches[i] for _, i, _ in dirty],
                             "matched_id": [item_ids[i] for _, i, _ in dirty],
                             "score": [float(c) for _, _, c in dirty]}), out / "flags.parquet")
    timing = {"items": len(items), "docs": len(texts), "ngrams_indexed": len(index),
              "index_cpu_s": c1 - c0, "scan_cpu_s": c2 - c1, "index_bytes": rss1 - rss0,
              "settings": {"n": args.n, "normalise": "lower, strip string.punctuation, split",
                           "dirty": "any shared n-gram"}}
    (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")


if __name__ == "__main__":
    main()
