"""Micro-benchmark: MinHash signatures, ours vs datasketch 2.0 vs rensa 0.5 (one core).

    .venv/bin/python benchmarks/minhash_signatures.py [--docs 2000] [--words 1000]

Corpus: synthetic documents of `--words` words, each a random window of the token stream
of the sample corpus (/work/shared/data/samples/corpus, read-only), 20% of them near-copies
of another with 1% of words replaced (the setup of docs/environment.md section 4).
num_perm 128, word 5-gram shingles. Every implementation runs in this one process (single
threaded); each figure is the best of `--repeat` runs, reported as docs per wall second and
docs per CPU second (process time, less sensitive to other load on the machine).

"from text" rows include lower-casing, tokenising and shingling; "pre-shingled" rows start
from each implementation's own shingle representation, built outside the timer.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators.dedup.minhash_shingles import shingle_hashes, shingle_strings, tokenize  # noqa: E402
from operators.dedup.minhash_signatures import signatures, text_signatures  # noqa: E402

CORPUS = Path("/work/shared/data/samples/corpus")
NUM_PERM, NGRAM, SEED = 128, 5, 1


def make_docs(n_docs: int, n_words: int, seed: int = 0) -> list[str]:
    text = " ".join(pq.read_table(CORPUS, columns=["text"])["text"].to_pylist())
    tokens = re.findall(r"\w+", text.lower())
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        if docs and rng.random() < 0.2:
            words = docs[rng.integers(len(docs))].split()
            for i in rng.choice(len(words), max(1, n_words // 100), replace=False):
                words[i] = tokens[rng.integers(len(tokens))]
        else:
            start = int(rng.integers(0, len(tokens) - n_words))
            words = tokens[start : start + n_words]
        docs.append(" ".join(words))
    return docs


def measure(fn: Callable[[], object], n_docs: int, repeat: int) -> tuple[float, float]:
    """Best docs/s over `repeat` runs: (per wall second, per CPU second)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return n_docs / best_wall, n_docs / best_cpu


def python_shingles(text: str) -> list[str]:
    return shingle_strings(tokenize(text), NGRAM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--words", type=int, default=1000)
    ap.add_argument("--slow-docs", type=int, default=400, help="docs for datasketch runs")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import datasketch
    import rensa

    docs = make_docs(args.docs, args.words)
    slow = docs[: args.slow_docs]
    rows: list[tuple[str, int, tuple[float, float]]] = []

    def run(name: str, fn: Callable[[], object], n: int) -> None:
        rows.append((name, n, measure(fn, n, args.repeat)))
        print(f"{name:<58} {rows[-1][2][0]:>8,.0f} {rows[-1][2][1]:>8,.0f}", flush=True)

    print(f"{args.docs} docs x {args.words} words, num_perm {NUM_PERM}, word {NGRAM}-grams")
    print(f"{'implementation':<58} {'docs/s':>8} {'docs/cpu-s':>8}")

    # ours
    sh = shingle_hashes(docs, NGRAM)
    run(
        "ours: from text (text_signatures, fused per block)",
        lambda: text_signatures(docs, NUM_PERM, SEED, NGRAM),
        len(docs),
    )
    run(
        "ours: from text (signatures(shingle_hashes(...)))",
        lambda: signatures(shingle_hashes(docs, NGRAM), NUM_PERM, SEED),
        len(docs),
    )
    run("ours: shingle_hashes only", lambda: shingle_hashes(docs, NGRAM), len(docs))
    run(
        "ours: signatures only (pre-shingled)", lambda: signatures(sh, NUM_PERM, SEED), len(docs)
    )

    # Python shingling, the input of datasketch and rensa
    run(
        "python tokenize + 5-gram strings only",
        lambda: [python_shingles(t) for t in docs],
        len(docs),
    )
    shingle_lists = [python_shingles(t) for t in docs]
    shingle_bytes = [[s.encode() for s in sl] for sl in shingle_lists[: len(slow)]]

    def ds_from_text() -> None:
        for t in slow:
            m = datasketch.MinHash(num_perm=NUM_PERM, seed=SEED)
            m.update_batch([s.encode() for s in python_shingles(t)])

    def ds_pre() -> None:
        for sb in shingle_bytes:
            datasketch.MinHash(num_perm=NUM_PERM, seed=SEED).update_batch(sb)

    run("datasketch MinHash.update_batch: from text", ds_from_text, len(slow))
    run("datasketch MinHash.update_batch: pre-shingled", ds_pre, len(slow))

    def rensa_from_text() -> None:
        for t in docs:
            m = rensa.RMinHash(num_perm=NUM_PERM, seed=SEED)
            m.update(python_shingles(t))
            m.digest()

    def rensa_pre() -> None:
        for sl in shingle_lists:
            m = rensa.RMinHash(num_perm=NUM_PERM, seed=SEED)
            m.update(sl)
            m.digest()

    run("rensa RMinHash.update: from text", rensa_from_text, len(docs))
    run("rensa RMinHash.update: pre-shingled", rensa_pre, len(docs))


if __name__ == "__main__":
    main()
