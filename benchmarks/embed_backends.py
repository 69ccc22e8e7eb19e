"""Embedding backends, one run, same thread count: speed, fidelity to torch, downstream effect.

    .venv/bin/python benchmarks/embed_backends.py [--docs 400] [--threads 2] [--rounds 2]

- Speed: docs/s on `--docs` documents sampled (seeded) from the sample corpus, for raw
  `SentenceTransformer.encode` and for the `embed` operator with each backend, called the
  way the pipeline calls it (`pipelines.steps.apply_step` on one Arrow batch, exactly what
  `pipelines.plan.MapStep` does in a Ray actor). Rounds are interleaved (raw, torch, onnx,
  openvino bf16, openvino int8, static, raw, ...) so that load from other processes hits
  every backend alike; the best and the median round are reported, with the 1-minute load
  average around each, and the speed-up over `embed` torch both best-to-best and as the
  median over rounds of the ratio within a round. openvino runs bf16 (and int8's other
  layers) only where the CPU supports it; the precision it ran and the CPU's bf16 flags
  are printed, since its speed depends on them.
- Fidelity: per-document cosine of each backend's vector to raw torch's (mean, min).
- Downstream: near-duplicate recall. Every pair in dedup_pairs.parquet (word-5-gram
  Jaccard >= 0.8) is embedded; recall = share of those pairs whose cosine >= tau, and
  the false-positive rate is the share of 2,000 random pairs of docs from different
  duplicate clusters that also reach tau. Also top-10 nearest-neighbour agreement with
  torch on the speed sample.

Nothing is written into the repository; the sample data is read in place.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators.base import Context  # noqa: E402
from operators.embed import Embed, EmbedParams, vectors_of  # noqa: E402
from operators.embed.backends import BUILT, REGISTRY, default_artefact_dir  # noqa: E402
from operators.embed.models import default_model_path, read_manifest  # noqa: E402
from pipelines import columns as C  # noqa: E402
from pipelines.steps import apply_step  # noqa: E402

SAMPLES = REPO.parent / "shared" / "data" / "samples"
TAUS = (0.80, 0.90, 0.95)


def load_corpus() -> pa.Table:
    files = sorted((SAMPLES / "corpus").glob("*.parquet"))
    return pa.concat_tables(pq.read_table(f, columns=["id", "text"]) for f in files)


def pipeline_batch(texts: list[str]) -> pa.Table:
    """One batch as the pipeline hands it to a step: user columns plus bookkeeping."""
    n = len(texts)
    return pa.table({
        "id": pa.array([str(i) for i in range(n)]),
        "text": pa.array(texts, pa.string()),
        C.ORDER: pa.array(np.arange(n, dtype=np.int64)),
        C.SHARD: pa.array(np.zeros(n, np.int32)),
        C.DROP_STEP: pa.nulls(n, pa.int16()),
        C.REASON: pa.nulls(n, pa.string()),
        C.DETAIL: pa.nulls(n, pa.string()),
    })


class Runner:
    """Something that embeds a list of texts; `name`, `__call__(texts) -> (n, dim)`."""

    def __init__(self, name: str, fn) -> None:
        self.name = name
        self.fn = fn
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.loads: list[float] = []

    def timed(self, texts: list[str]) -> np.ndarray:
        self.loads.append(os.getloadavg()[0])
        start, cpu = time.perf_counter(), time.process_time()
        out = self.fn(texts)
        self.seconds.append(time.perf_counter() - start)
        self.cpu_seconds.append(time.process_time() - cpu)  # all threads of this process
        return out


# Precisions measured where a backend takes one (f32 runs at torch speed: not measured).
MEASURED_PRECISIONS = ("bf16", "int8")
# (backend, precision) measured through the operator, every backend (torch first: the base)
VARIANTS = tuple((name, p) for name, spec in REGISTRY.items()
                 for p in ([p for p in MEASURED_PRECISIONS if p in spec.precisions] or [None]))


def op_runner(backend: str, precision: str | None, threads: int,
              batch_size: int) -> tuple[Runner, float, Embed]:
    start = time.perf_counter()
    op = Embed(EmbedParams(backend=backend, threads=threads, batch_size=batch_size,
                           precision=precision or "bf16"), Context())
    op.setup()  # builds the artefact if missing (not timed as encode)
    setup = time.perf_counter() - start
    name = f"embed {backend}" + (f" {precision}" if precision else "")

    def run(texts: list[str]) -> np.ndarray:
        out = apply_step(pipeline_batch(texts), op.process, op, 1, last_stage=True)
        return vectors_of(out["embedding"])

    return Runner(name, run), setup, op


def cpu_bf16_flags() -> list[str]:
    """The CPU flags that give OpenVINO fast bf16 (empty: it runs f32)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    corpus = load_corpus()
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(corpus.num_rows, size=args.docs, replace=False))
    texts = corpus["text"].take(pa.array(pick)).to_pylist()

    model = SentenceTransformer(str(default_model_path()),
                                device="cpu", local_files_only=True)
    raw = Runner("raw model.encode", lambda t: model.encode(
        t, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False))
    runners = [raw]
    setups = {}
    ops = {}
    for backend, precision in VARIANTS:
        r, setup, op = op_runner(backend, precision, args.threads, args.batch_size)
        setups[r.name], ops[r.name] = setup, op
        runners.append(r)
    for r in runners:  # warm-up: first-call allocations, lazy inits
        r.fn(texts[:8])

    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for r in runners:
            vectors[r.name] = r.timed(texts)
    ref = vectors[raw.name]

    # Downstream: near-duplicate pairs, and random pairs across clusters.
    pairs = pq.read_table(SAMPLES / "dedup_pairs.parquet")
    clusters = pq.read_table(SAMPLES / "dedup_clusters.parquet")
    pair_ids = sorted(set(pairs["id_a"].to_pylist()) | set(pairs["id_b"].to_pylist()))
    extra_ids = corpus["id"].take(pa.array(rng.choice(corpus.num_rows, 600, replace=False)))
    ids = sorted(set(pair_ids) | set(extra_ids.to_pylist()))
    id_table = corpus.filter(pc.is_in(corpus["id"], pa.array(ids)))
    row_of = {d: i for i, d in enumerate(id_table["id"].to_pylist())}
    dd_texts = id_table["text"].to_pylist()
    cluster_of = dict(zip(clusters["id"].to_pylist(), clusters["cluster_id"].to_pylist(),
                          strict=True))
    a = np.array([row_of[x] for x in pairs["id_a"].to_pylist()])
    b = np.array([row_of[x] for x in pairs["id_b"].to_pylist()])
    dd_ids = id_table["id"].to_pylist()
    neg = []
    while len(neg) < 2000:
        i, j = (int(x) for x in rng.integers(0, len(dd_texts), 2))
        if cluster_of[dd_ids[i]] != cluster_of[dd_ids[j]]:
            neg.append((i, j))
    neg = np.array(neg)
    downstream = {}
    for r in runners:
        if r.name == "embed torch":  # same vectors as raw encode (cos 1.0000 above)
            continue
        v = r.fn(dd_texts)
        pos_cos = (v[a] * v[b]).sum(1)
        neg_cos = (v[neg[:, 0]] * v[neg[:, 1]]).sum(1)
        downstream[r.name] = {
            f"{tau:.2f}": {"recall": float((pos_cos >= tau).mean()),
                           "false_pos": float((neg_cos >= tau).mean())} for tau in TAUS}
        downstream[r.name]["pair_cos_mean"] = float(pos_cos.mean())
        downstream[r.name]["random_cos_mean"] = float(neg_cos.mean())

    def knn(v: np.ndarray, k: int = 10) -> np.ndarray:
        sim = v @ v.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1)[:, :k]

    ref_nn = knn(ref)
    torch_best = min(runners[1].seconds)
    results = {"docs": args.docs, "threads": args.threads, "rounds": args.rounds,
               "batch_size": args.batch_size, "mean_chars": float(np.mean([len(t) for t in texts])),
               "cpu_count": os.cpu_count(), "cpu_bf16_flags": cpu_bf16_flags(),
               "openvino_precision": ops["embed openvino bf16"]._encoder.precision,
               "backends": {}}
    for r in runners:
        v = vectors[r.name]
        cos = (v * ref).sum(1)
        nn = knn(v)
        overlap = np.mean([len(set(nn[i]) & set(ref_nn[i])) / nn.shape[1] for i in range(len(v))])
        results["backends"][r.name] = {
            "docs_per_s_best": args.docs / min(r.seconds),
            "docs_per_s_median": args.docs / statistics.median(r.seconds),
            "docs_per_cpu_s_best": args.docs / min(r.cpu_seconds),
            "speedup_vs_embed_torch": torch_best / min(r.seconds),
            # rounds are interleaved, so round k of both ran under the same conditions
            "speedup_per_round_median": statistics.median(
                t / s for t, s in zip(runners[1].seconds, r.seconds, strict=True)),
            "load_avg_1m": [round(x, 2) for x in r.loads],
            "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "knn10_overlap": float(overlap),
            "downstream": downstream.get(r.name, downstream[raw.name]),
            "setup_s": setups.get(r.name),
        }
    for name, op in ops.items():
        if op.params.backend in BUILT:
            m = read_manifest(default_artefact_dir(None, op.params.backend)) or {}
            results["backends"][name]["artefact_build_s"] = m.get("built_seconds")

    print(f"\n{args.docs} docs (mean {results['mean_chars']:.0f} chars), {args.threads} threads, "
          f"batch {args.batch_size}, {args.rounds} interleaved rounds, {os.cpu_count()} cores; "
          f"openvino ran {results['openvino_precision']} "
          f"(CPU bf16 flags: {', '.join(results['cpu_bf16_flags']) or 'none'})\n")
    print("| backend | docs/s best | docs/s median | x embed-torch (best) | "
          "x embed-torch (per-round median) | docs per CPU-s | "
          "load avg (1m) per round | cos mean | cos min | kNN@10 overlap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results["backends"].items():
        print(f"| {name} | {r['docs_per_s_best']:.1f} | {r['docs_per_s_median']:.1f} | "
              f"{r['speedup_vs_embed_torch']:.2f} | {r['speedup_per_round_median']:.2f} | "
              f"{r['docs_per_cpu_s_best']:.1f} | "
              f"{r['load_avg_1m']} | {r['cos_mean']:.4f} | "
              f"{r['cos_min']:.4f} | {r['knn10_overlap']:.3f} |")
    print(f"\nnear-dup pairs: {len(a)} (Jaccard >= 0.8); random cross-cluster pairs: {len(neg)}\n")
    print("| backend | pair cos mean | random cos mean | "
          + " | ".join(f"recall / FP @ {t:.2f}" for t in TAUS) + " |")
    print("|---|---|---|" + "---|" * len(TAUS))
    for name, d in downstream.items():
        cells = " | ".join(f"{d[f'{t:.2f}']['recall']:.3f} / {d[f'{t:.2f}']['false_pos']:.3f}"
                           for t in TAUS)
        print(f"| {name} | {d['pair_cos_mean']:.4f} | {d['random_cos_mean']:.4f} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
