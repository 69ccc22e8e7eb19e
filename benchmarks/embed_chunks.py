"""What `embed`'s `long_text: chunks` changes against `head`: speed, windows, similarity.

    .venv/bin/python benchmarks/embed_chunks.py [--docs 200] [--long 200] [--threads 2]
        [--rounds 2] [--speed torch,openvino-int8,static] [--similarity torch,static]

- Windows: how many windows `chunks` embeds per document (default 254 word-pieces each, at
  most `max_chunks` = 16) over the whole sample corpus, and the share of word-pieces each
  mode sees.
- Speed: docs/s and docs per CPU-second of `Embed.encode` (what `process` runs, cache off)
  on `--docs` documents sampled (seeded) from the corpus, head and chunks interleaved per
  round and backend, best round reported with the 1-minute load average around it.
- Similarity: on `--long` documents of 512 to `--long-max` (4,064 = 16 windows) word-pieces
  with at least 4 paragraphs (so the 256-token head sees under half of each, and `chunks`
  all of it), the cosine of a document's vector to
  the vector of (i) its second half only, (ii) its paragraphs shuffled, (iii) the document
  with its first 300 word-pieces cut off; against the cosine to 20 unrelated long
  documents each. Separation: the share of variants above the unrelated pairs' 99th
  percentile (the threshold that lets 1 % of unrelated pairs through), and how often a
  variant's nearest neighbour among the `--long` originals is its own original.

The sample corpus is read in place; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators.base import Context  # noqa: E402
from operators.embed import Embed, EmbedParams  # noqa: E402
from operators.embed.chunks import Chunker  # noqa: E402

SAMPLES = REPO.parent / "shared" / "data" / "samples"
CUT_TOKENS = 300  # (iii): more than the head window, so `head` sees none of the original head
UNRELATED = 20
# "openvino-int8" -> backend openvino, precision int8
BACKEND_PARAMS = {"torch": {"backend": "torch"}, "onnx": {"backend": "onnx"},
                  "openvino": {"backend": "openvino"},
                  "openvino-int8": {"backend": "openvino", "precision": "int8"},
                  "static": {"backend": "static"}}


def load_corpus() -> pa.Table:
    files = sorted((SAMPLES / "corpus").glob("*.parquet"))
    return pa.concat_tables(pq.read_table(f, columns=["id", "text"]) for f in files)


def load1() -> float:
    return os.getloadavg()[0]


def window_stats(per_doc: np.ndarray, doc_tokens: np.ndarray, max_chunks: int,
                 head_tokens: int) -> dict:
    seen_head = np.minimum(doc_tokens, head_tokens).sum()
    return {"docs": int(len(per_doc)), "windows_mean": float(per_doc.mean()),
            "p50": float(np.percentile(per_doc, 50)), "p90": float(np.percentile(per_doc, 90)),
            "p99": float(np.percentile(per_doc, 99)), "max": int(per_doc.max()),
            "share_over_one": float((per_doc > 1).mean()),
            "share_capped": float((per_doc == max_chunks).mean()),
            "wordpieces_seen_head": float(seen_head / doc_tokens.sum()),
            "histogram": {str(k): int(v) for k, v in
                          zip(*np.unique(per_doc, return_counts=True), strict=True)}}


def make_op(backend: str, long_text: str, threads: int) -> Embed:
    params = BACKEND_PARAMS[backend] | {"long_text": long_text, "threads": threads}
    op = Embed(EmbedParams(**params), Context())
    op.setup()
    return op


def speed(backends: list[str], texts: list[str], threads: int, rounds: int) -> list[dict]:
    ops = {(b, m): make_op(b, m, threads) for b in backends for m in ("head", "chunks")}
    for op in ops.values():
        op.encode(texts[:8])  # warm-up: first-call allocations, lazy imports
    times: dict = {k: [] for k in ops}
    for r in range(rounds):
        for key, op in ops.items():
            before = load1()
            wall, cpu = time.perf_counter(), time.process_time()
            op.encode(texts)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[key].append((wall, cpu, before, load1()))
            print(f"  round {r + 1} {key[0]:>13} {key[1]:>6}: {len(texts) / wall:8.1f} docs/s "
                  f"(load {before:.1f}->{load1():.1f})", flush=True)
    rows = []
    for b in backends:
        best = {m: min(times[(b, m)]) for m in ("head", "chunks")}
        ratios = [c[0] / h[0] for h, c in zip(times[(b, "head")], times[(b, "chunks")],
                                              strict=True)]
        rows.append({"backend": b, **{f"{m}_docs_s": len(texts) / best[m][0]
                                      for m in best},
                     **{f"{m}_docs_cpu_s": len(texts) / best[m][1] for m in best},
                     "chunks_cost_x_per_round": [round(x, 2) for x in ratios],
                     "load": [round(x, 1) for m in best for x in best[m][2:]]})
    return rows


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def cut_at_space(text: str, at: int) -> str:
    """`text` from the first whitespace at or after character `at`."""
    m = re.compile(r"\s").search(text, at)
    return text[m.end():] if m else text[at:]


def variants(texts: list[str], tokenizer, seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    half = [cut_at_space(t, len(t) // 2) for t in texts]
    shuffled = []
    for t in texts:
        paras = paragraphs(t)
        order = np.arange(len(paras))
        while (order == np.arange(len(paras))).all():
            order = rng.permutation(len(paras))
        shuffled.append("\n\n".join(paras[i] for i in order))
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    cut = [cut_at_space(t, e.offsets[CUT_TOKENS][0]) for t, e in zip(texts, encs, strict=True)]
    return {"second half": half, "paragraphs shuffled": shuffled,
            f"first {CUT_TOKENS} word-pieces cut": cut}


def similarity(backend: str, long_docs: list[str], forms: dict[str, list[str]],
               threads: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    n = len(long_docs)
    k = min(UNRELATED, n - 1)
    others = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False)
                       for i in range(n)])
    rows = []
    for mode in ("head", "chunks"):
        op = make_op(backend, mode, threads)
        start = time.perf_counter()
        base = op.encode(long_docs)
        unrelated = np.einsum("nd,nkd->nk", base, base[others]).ravel()
        bar = float(np.percentile(unrelated, 99))
        row = {"backend": backend, "mode": mode, "unrelated_mean": float(unrelated.mean()),
               "unrelated_p99": bar, "unrelated_max": float(unrelated.max()), "variants": {}}
        for name, texts in forms.items():
            v = op.encode(texts)
            cos = (v * base).sum(axis=1)
            top1 = float((np.argmax(v @ base.T, axis=1) == np.arange(n)).mean())
            row["variants"][name] = {"mean": float(cos.mean()),
                                     "p5": float(np.percentile(cos, 5)),
                                     "above_unrelated_p99": float((cos > bar).mean()),
                                     "top1": top1}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(f"  similarity {backend} {mode}: {row['seconds']:.0f} s", flush=True)
    return rows


def print_tables(report: dict) -> None:
    w = report["windows"]
    print("\n| docs | windows/doc mean | p50 | p90 | p99 | max | > 1 window | capped at "
          "max_chunks | word-pieces head sees |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {w['docs']:,} | {w['windows_mean']:.2f} | {w['p50']:.0f} | {w['p90']:.0f} | "
          f"{w['p99']:.0f} | {w['max']} | {w['share_over_one']:.1%} | {w['share_capped']:.1%} "
          f"| {w['wordpieces_seen_head']:.1%} |")
    print("\n| backend | head docs/s | chunks docs/s | chunks / head | head docs per CPU-s | "
          "chunks docs per CPU-s | chunks time x head, per round | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["speed"]:
        print(f"| {r['backend']} | {r['head_docs_s']:,.1f} | {r['chunks_docs_s']:,.1f} | "
              f"{r['chunks_docs_s'] / r['head_docs_s']:.2f} | {r['head_docs_cpu_s']:,.1f} | "
              f"{r['chunks_docs_cpu_s']:,.1f} | {r['chunks_cost_x_per_round']} | "
              f"{min(r['load']):.1f}-{max(r['load']):.1f} |")
    print("\n| backend | mode | variant | cosine mean | cosine p5 | above unrelated p99 | "
          "nearest original is its own | unrelated mean / p99 / max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["similarity"]:
        for name, v in r["variants"].items():
            print(f"| {r['backend']} | {r['mode']} | {name} | {v['mean']:.3f} | {v['p5']:.3f} "
                  f"| {v['above_unrelated_p99']:.1%} | {v['top1']:.1%} | "
                  f"{r['unrelated_mean']:.3f} / {r['unrelated_p99']:.3f} / "
                  f"{r['unrelated_max']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=200, help="speed sample size")
    ap.add_argument("--long", type=int, default=200, help="long documents for similarity")
    ap.add_argument("--long-max", type=int, default=16 * 254,
                    help="longest document (word-pieces) for similarity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--speed", default="torch,openvino-int8,static")
    ap.add_argument("--similarity", default="torch,static", help="backends, or '' for none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    corpus = load_corpus()
    texts = [t for t in corpus["text"].to_pylist() if t]
    probe = make_op("torch", "chunks", args.threads)
    chunker: Chunker = probe._chunker
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{started}; load {load1():.1f}; windowing {len(texts):,} documents", flush=True)
    windows = chunker.windows(texts)
    report = {"started": started, "args": {k: str(v) for k, v in vars(args).items()},
              "windows": window_stats(windows.per_doc, windows.doc_tokens, chunker.max_chunks,
                                      probe._encoder.max_tokens - 2)}
    rng = np.random.default_rng(args.seed)
    sample = [texts[i] for i in rng.choice(len(texts), args.docs, replace=False)]
    print("speed", flush=True)
    report["speed"] = speed(args.speed.split(","), sample, args.threads, args.rounds)

    long_ids = np.flatnonzero((windows.doc_tokens >= 512)
                              & (windows.doc_tokens <= args.long_max)
                              & np.array([len(paragraphs(t)) >= 4 for t in texts]))
    picked = rng.choice(long_ids, min(args.long, len(long_ids)), replace=False)
    long_docs = [texts[i] for i in picked]
    report["long_docs"] = {"eligible": int(len(long_ids)), "used": len(long_docs),
                           "wordpieces_mean": float(windows.doc_tokens[picked].mean()),
                           "wordpieces_p50": float(np.median(windows.doc_tokens[picked]))}
    forms = variants(long_docs, chunker.tokenizer, args.seed)
    print(f"similarity on {len(long_docs)} long documents", flush=True)
    report["similarity"] = [row for b in filter(None, args.similarity.split(","))
                            for row in similarity(b, long_docs, forms, args.threads, args.seed)]
    report["finished_load"] = load1()
    print_tables(report)
    print(f"\nlong documents: {report['long_docs']}; finished at load {load1():.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
