"""decontam.embedding's calibration sweep: recall per leak kind, near-miss and clean flag
rates for a grid of (item_halves, margin, half_margin, sibling_floor), every rule scored on
the same vectors (each span and item text embedded once).

    .venv/bin/python benchmarks/decontam_embedding_sweep.py [--work /tmp/curate-contam]
        [--clean 1000] [--backend openvino] [--no-half-windows]

Data: the dev set of `contamination_devset.py` (built into WORK/devset when missing): its
index (GSM8K + stdlib code items), every leak and near-miss document and `--clean` clean
documents (sampled, seed 0). The operator's own functions cut the spans, build the item
views, calibrate and search (`operators.decontam.embedding_math`), so a row of this table
is what the operator decides with those params (`curate run` of the same documents agrees,
docs/contamination.md). The vectors are cached in WORK/sweep-vectors-BACKEND.parquet, keyed
by an xxh3-128 hash of the text. Results: printed and WORK/sweep-BACKEND[-full-windows].json.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from operators.decontam.embedding import item_views  # noqa: E402
from operators.decontam.embedding_math import (  # noqa: E402
    best_matches,
    build_index,
    default_window,
    document_spans,
    item_thresholds,
    search,
    sibling_cosines,
)

GRID = {"halves": [False, True], "margin": [0.05, 0.1, 0.15], "half_extra": [0.0, 0.03],
        "floor": [0.0, 0.5, 0.75]}


def load(work: Path, clean: int) -> tuple[pa.Table, pa.Table]:
    dev = work / "devset"
    if not (dev / "truth.parquet").exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "contamination_devset.py"),
                        "--out", str(dev)], check=True)
    corpus = pa.concat_tables([pq.read_table(p, columns=["id", "text"])
                               for p in sorted(glob.glob(str(dev / "corpus" / "*.parquet")))])
    truth = pq.read_table(dev / "truth.parquet")
    docs = corpus.join(truth.select(["id", "role", "kind", "bench_id"]), "id").sort_by("id")
    role = docs["role"].to_numpy(zero_copy_only=False)
    rng = np.random.default_rng(0)
    clean_rows = np.flatnonzero(role == "clean")
    keep = np.sort(np.r_[np.flatnonzero(role != "clean"),
                         rng.choice(clean_rows, min(clean, len(clean_rows)), replace=False)])
    items = pa.concat_tables([pq.read_table(p) for p in
                              sorted(glob.glob(str(dev / "index" / "*.parquet")))])
    return docs.take(pa.array(keep)), items


class Vectors:
    """Text -> vector, embedded once and cached on disk."""

    def __init__(self, path: Path, backend: str) -> None:
        self.path, self.backend, self.encoder = path, backend, None
        self.known: dict[bytes, np.ndarray] = {}
        if path.exists():
            t = pq.read_table(path)
            dim = t["vector"].type.list_size
            flat = t["vector"].combine_chunks().values.to_numpy().reshape(-1, dim)
            self.known = dict(zip(t["key"].to_pylist(), flat, strict=True))
        self.seconds = 0.0

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [xxhash.xxh3_128_digest(t.encode()) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.known))
        if todo:
            if self.encoder is None:
                from operators.embed.backends import load_encoder

                self.encoder = load_encoder(None, self.backend)
            by_key = dict(zip(keys, texts, strict=True))
            start = time.process_time()
            for a in range(0, len(todo), 1024):
                chunk = todo[a:a + 1024]
                vecs = self.encoder.encode([by_key[k] for k in chunk], 32)
                self.known.update(zip(chunk, vecs, strict=True))
                print(f"  embedded {a + len(chunk)}/{len(todo)}", flush=True)
            self.seconds += time.process_time() - start
            self.save()
        return np.stack([self.known[k] for k in keys])

    def save(self) -> None:
        keys = list(self.known)
        x = np.stack([self.known[k] for k in keys]).astype(np.float32)
        pq.write_table(pa.table({"key": pa.array(keys, pa.binary()),
                                 "vector": pa.FixedSizeListArray.from_arrays(
                                     pa.array(x.reshape(-1)), x.shape[1])}), self.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/curate-contam")
    ap.add_argument("--clean", type=int, default=1000)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--no-half-windows", dest="half_windows", action="store_false",
                    help="search full windows and paragraphs only (`half_windows: false`)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    docs, items = load(work, args.clean)
    vectors = Vectors(work / f"sweep-vectors-{args.backend}.parquet", args.backend)
    texts = docs["text"].to_pylist()
    item_texts = items["text"].to_pylist()
    window = default_window(np.array([len(t.split()) for t in item_texts]))
    spans = document_spans(texts, window, 64, 16, args.half_windows)
    queries = vectors(spans.texts(texts))
    views = {h: item_views(item_texts, h) for h in (False, True)}
    view_vectors = {h: vectors(v[0]) for h, v in views.items()}
    ids = np.asarray(items["bench_id"].to_pylist(), object)
    bench = np.asarray(items["benchmark"].to_pylist(), object)
    kind = np.asarray([k or "clean" for k in docs["kind"].to_pylist()], object)
    role = np.asarray(docs["role"].to_pylist(), object)
    truth = np.asarray(docs["bench_id"].to_pylist(), object)
    rows = []
    for halves, margin, extra, floor in itertools.product(*GRID.values()):
        if extra and not halves:
            continue
        _, item, view = views[halves]
        x = view_vectors[halves]
        groups = np.unique(np.char.add(bench[item].astype(str), np.asarray(view, str)),
                           return_inverse=True)[1]
        sibling = sibling_cosines(x, groups)
        margins = np.where(np.asarray(view) == "item", margin, margin + extra)
        thresholds = item_thresholds(sibling, groups, 0.7, margins, floor)
        cos, found = search(build_index(x, 10**9, 1, 0), queries, 8, x)
        m = best_matches(spans.doc, cos, found, thresholds, len(texts))
        got = np.where(m.item >= 0, ids[item[np.maximum(m.item, 0)]], None)
        row = {"item_halves": halves, "margin": margin, "half_margin": round(margin + extra, 3),
               "sibling_floor": floor}
        for k in sorted(set(kind)):
            sel = kind == k
            leak = role[sel][0] == "leak"
            rate = (got[sel] == truth[sel]).mean() if leak else (m.item[sel] >= 0).mean()
            row[k] = round(float(rate), 3)
        rows.append(row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    out = {"docs": len(texts), "spans": len(spans), "window_words": window,
           "half_windows": args.half_windows,
           "items": len(item_texts), "embed_cpu_seconds": round(vectors.seconds, 1),
           "rows": rows}
    name = f"sweep-{args.backend}{'' if args.half_windows else '-full-windows'}.json"
    (work / name).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
