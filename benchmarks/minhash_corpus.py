"""Synthetic-but-realistic near-duplicate corpus with known ground truth, for MinHash benchmarks.

    .venv/bin/python benchmarks/minhash_corpus.py 100000              # -> /tmp/mhbench/100000
    .venv/bin/python benchmarks/minhash_corpus.py 50000 --out DIR --seed 0 --shards 4

Source text: the real documents of the shared sample corpus
(/work/shared/data/samples/corpus/*.parquet, read-only; Python docs sections and tldr pages).
Nothing is copied into the repository: output goes to a directory under /tmp.

Construction (deterministic for a given seed and N):
1. Chunk pool. Each source document is cut into runs of consecutive paragraphs of
   20-60 whitespace words (longer paragraphs are cut into 40-word pieces). Chunks whose
   `\\w+` token sequence repeats are kept once. About 50k chunks of real text.
2. Base documents. Each is 150-300 words (uniform): random chunks, joined by blank lines,
   the last one cut to length. Two base documents would need to share ~80% of their
   chunks in the same order to be near-duplicates, which does not happen by chance at
   these sizes (the benchmark audits every false-positive pair by exact Jaccard anyway).
3. Planted near-duplicates. A fraction `--dup-rate` (default 10%) of base documents get
   1-3 near-copies. Each copy has an edit budget drawn uniformly in [--edit-min, --edit-max]
   (default 1%-5%) of its words, spent in edit sites of 1-2 words: substitution by a
   random pool word, deletion, or insertion (equal odds). Paragraph breaks are kept.
4. Ground truth. Tokens are `re.findall(r"\\w+", text.lower())`, shingles the *set* of
   word 5-grams (documents with fewer than 5 tokens: one shingle of all tokens), exactly
   as the shared sample kit. For each planted group (source + its copies) every pair's
   exact Jaccard is computed; pairs with J >= --threshold (0.8) are true pairs; clusters
   are connected components. So copies with many scattered edits land *below* the
   threshold and are not duplicates: they test precision near the threshold.
5. All documents are shuffled, given ids `d0000000..`, and written in id order.

Output directory:
    part-00000.parquet ...   id (string), text (string)
    clusters.parquet         id, cluster_id, cluster_size (every document; singletons size 1)
    planted_pairs.parquet    id_a, id_b, jaccard, is_dup: every pair inside a planted group
    manifest.json            parameters and counts
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = Path("/work/shared/data/samples/corpus")
_WORD = re.compile(r"\w+")
_PARA = re.compile(r"\n[ \t]*\n")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingle_set(text: str, n: int = 5) -> set[tuple[str, ...]]:
    tok = tokenize(text)
    if len(tok) < n:
        return {tuple(tok)} if tok else set()
    return {tuple(tok[i:i + n]) for i in range(len(tok) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def chunk_pool(min_words: int = 20, max_words: int = 60, piece: int = 40) -> list[str]:
    """Runs of consecutive paragraphs of min_words..max_words words, de-duplicated."""
    texts = pq.read_table(sorted(SAMPLES.glob("*.parquet")), columns=["text"])["text"]
    seen: set[tuple[str, ...]] = set()
    pool: list[str] = []

    def flush(parts: list[str]) -> None:
        text = "\n\n".join(parts).strip()
        key = tuple(tokenize(text))
        if len(key) >= 5 and key not in seen:
            seen.add(key)
            pool.append(text)

    for text in texts.to_pylist():
        acc: list[str] = []
        n = 0
        for para in _PARA.split(text):
            words = para.split()
            if not words:
                continue
            if len(words) > max_words:  # a long paragraph: 40-word pieces
                if acc:
                    flush(acc)
                    acc, n = [], 0
                for i in range(0, len(words), piece):
                    flush([" ".join(words[i:i + piece])])
                continue
            acc.append(para.strip())
            n += len(words)
            if n >= min_words:
                flush(acc)
                acc, n = [], 0
        if acc and n >= 8:
            flush(acc)
    return pool


def base_document(rng: np.random.Generator, pool: list[str], pool_words: list[int]) -> str:
    target = int(rng.integers(150, 301))
    parts: list[str] = []
    n = 0
    while n < target:
        c = int(rng.integers(len(pool)))
        need = target - n
        if pool_words[c] <= need:
            parts.append(pool[c])
            n += pool_words[c]
        else:  # cut the last chunk to length (keep its line structure)
            parts.append(_first_words(pool[c], need))
            n = target
    return "\n\n".join(parts)


def _first_words(text: str, k: int) -> str:
    pieces = re.split(r"(\s+)", text)  # words at even positions, separators at odd ones
    return "".join(pieces[: 2 * k - 1])


def near_copy(rng: np.random.Generator, text: str, vocab: list[str],
              edit_min: float, edit_max: float) -> tuple[str, float]:
    """A copy of `text` with an edit budget of rate * words, in sites of 1-2 words."""
    items = [[m.group(1), m.group(2)] for m in re.finditer(r"(\S+)(\s*)", text)]
    rate = float(rng.uniform(edit_min, edit_max))
    budget = max(1, round(rate * len(items)))
    sites = []
    while budget > 0:
        width = min(budget, int(rng.integers(1, 3)))
        sites.append((int(rng.integers(len(items))), width, int(rng.integers(3))))
        budget -= width
    for pos, width, kind in sorted(sites, reverse=True):  # right to left: positions stay valid
        if kind == 0:  # substitute
            for i in range(pos, min(pos + width, len(items))):
                items[i][0] = vocab[int(rng.integers(len(vocab)))]
        elif kind == 1 and len(items) > width + 5:  # delete
            del items[pos:pos + width]
        else:  # insert
            for _ in range(width):
                items.insert(pos, [vocab[int(rng.integers(len(vocab)))], " "])
    return "".join(w + s for w, s in items).rstrip(), rate


def generate(n_docs: int, out: Path, *, seed: int = 0, dup_rate: float = 0.10,
             max_copies: int = 3, edit_min: float = 0.01, edit_max: float = 0.05,
             threshold: float = 0.8, shards: int | None = None) -> dict:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = chunk_pool()
    pool_words = [len(c.split()) for c in pool]
    vocab = sorted({w for c in pool[:5000] for w in c.split() if _WORD.fullmatch(w)})
    # Plan how many base docs get copies so that the total is n_docs.
    mean_copies = (1 + max_copies) / 2
    n_base = math.ceil(n_docs / (1 + dup_rate * mean_copies))
    texts: list[str] = []
    group: list[int] = []  # planted group id of each doc, -1 = none
    rates: list[float] = []
    groups = 0
    while len(texts) < n_docs:
        src = base_document(rng, pool, pool_words)
        texts.append(src)
        rates.append(0.0)
        if rng.random() < dup_rate and len(texts) < n_docs:
            k = int(rng.integers(1, max_copies + 1))
            k = min(k, n_docs - len(texts))
            group.append(groups)
            for _ in range(k):
                copy, rate = near_copy(rng, src, vocab, edit_min, edit_max)
                texts.append(copy)
                group.append(groups)
                rates.append(rate)
            groups += 1
        else:
            group.append(-1)
    del n_base
    gen_s = time.perf_counter() - t0

    # Shuffle, name, and compute the ground truth inside planted groups.
    perm = rng.permutation(n_docs)  # perm[new position] = old index
    ids = np.array([f"d{i:07d}" for i in range(n_docs)], dtype=object)
    new_pos = np.empty(n_docs, np.int64)
    new_pos[perm] = np.arange(n_docs)
    group_arr = np.array(group, np.int64)
    members: dict[int, list[int]] = {}
    for old in np.flatnonzero(group_arr >= 0).tolist():
        members.setdefault(int(group_arr[old]), []).append(old)
    parent = np.arange(n_docs)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    pa_ids, pb_ids, pj, pdup = [], [], [], []
    for olds in members.values():
        sets = {o: shingle_set(texts[o]) for o in olds}
        for a, b in combinations(olds, 2):
            j = jaccard(sets[a], sets[b])
            ia, ib = sorted((ids[new_pos[a]], ids[new_pos[b]]))
            pa_ids.append(ia)
            pb_ids.append(ib)
            pj.append(j)
            pdup.append(j >= threshold)
            if j >= threshold:
                ra, rb = find(int(new_pos[a])), find(int(new_pos[b]))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n_docs)], np.int64)
    _, cluster, size = np.unique(roots, return_inverse=True, return_counts=True)
    truth_s = time.perf_counter() - t0 - gen_s

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    shards = shards or max(4, math.ceil(n_docs / 50_000))
    ordered = [texts[i] for i in perm.tolist()]
    bounds = np.linspace(0, n_docs, shards + 1).astype(int)
    for s in range(shards):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        pq.write_table(pa.table({"id": pa.array(ids[lo:hi].tolist(), pa.string()),
                                 "text": pa.array(ordered[lo:hi], pa.string())}),
                       out / f"part-{s:05d}.parquet", compression="zstd")
    pq.write_table(pa.table({"id": pa.array(ids.tolist(), pa.string()),
                             "cluster_id": pa.array(cluster, pa.int64()),
                             "cluster_size": pa.array(size[cluster], pa.int64())}),
                   out / "clusters.parquet")
    pq.write_table(pa.table({"id_a": pa.array(pa_ids, pa.string()),
                             "id_b": pa.array(pb_ids, pa.string()),
                             "jaccard": pa.array(pj, pa.float64()),
                             "is_dup": pa.array(pdup, pa.bool_())}),
                   out / "planted_pairs.parquet")
    in_clusters = int((size[cluster] > 1).sum())
    pj_arr = np.array(pj)
    words = np.fromiter((len(t.split()) for t in texts), np.int64, n_docs)
    manifest = {
        "n_docs": n_docs, "seed": seed, "dup_rate": dup_rate, "max_copies": max_copies,
        "edit_rate": [edit_min, edit_max], "threshold": threshold, "shards": shards,
        "chunk_pool": len(pool), "planted_groups": len(members),
        "planted_copies": int((np.array(rates) > 0).sum()),
        "planted_pairs": len(pj), "true_pairs": int(sum(pdup)),
        "planted_pair_jaccard_quantiles": (np.quantile(pj_arr, [0, .1, .25, .5, .75, .9, 1])
                                           .round(3).tolist() if len(pj) else []),
        "planted_pairs_in_0.75_0.85": int(((pj_arr >= .75) & (pj_arr < .85)).sum()),
        "clusters_size_ge2": int((size > 1).sum()), "docs_in_clusters": in_clusters,
        "docs_removable_keep_one_per_cluster": int((size[size > 1] - 1).sum()),
        "words_per_doc_quantiles": np.quantile(words, [0, .1, .5, .9, 1]).tolist(),
        "chars": int(sum(map(len, texts))),
        "seconds": {"generate": round(gen_s, 1), "truth": round(truth_s, 1),
                    "total": round(time.perf_counter() - t0, 1)},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_docs", type=int)
    ap.add_argument("--out", type=Path, help="default /tmp/mhbench/N_DOCS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-rate", type=float, default=0.10)
    ap.add_argument("--max-copies", type=int, default=3)
    ap.add_argument("--edit-min", type=float, default=0.01)
    ap.add_argument("--edit-max", type=float, default=0.05)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--shards", type=int)
    a = ap.parse_args()
    out = a.out or Path(f"/tmp/mhbench/{a.n_docs}")
    m = generate(a.n_docs, out, seed=a.seed, dup_rate=a.dup_rate, max_copies=a.max_copies,
                 edit_min=a.edit_min, edit_max=a.edit_max, threshold=a.threshold,
                 shards=a.shards)
    print(json.dumps(m, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
