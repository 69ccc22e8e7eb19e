"""Does `select.jest` steer away from mis-paired text? The mechanistic check of
algorithms.md 1.8, offline: the share of noisy pairs among the rows the step keeps.

    nice -n 10 .venv/bin/python benchmarks/jest_step_noise.py --work /tmp/jest-noise

Data: GSM8K's prompt/answer pairs (the shared samples' bench.parquet). Rows 0-999 are the
pool, with `--noise` (default 30%) of their answers re-paired at random (seeded); rows
1000-1318 are a small clean "curated" set. Both sides are embedded once with the static
and the torch backends of all-MiniLM-L6-v2 into vector columns, so every arm runs the
real step (in process) on the same vectors:
- `default`: learner static, reference torch, both zero-shot (the step's defaults);
- `head`: learner static, reference torch + a head trained on the curated set
  (`curate.train_learner.train_head`, as `curate train-learner` does);
- `zero-shot torch learner + head`: learner torch zero-shot, reference torch + head;
each with scores learnability, easy_reference, hard_learner, independent. B = 200,
f = 0.8, N = 8 (five super-batches, 40 kept of each: 200 rows).
Prints per arm the kept rows' noisy share against the pool's.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.recipe import parse_recipe
from curate.train_learner import train_head
from operators.embed.backends import load_encoder
from operators.select.jest_encoders import save_head
from pipelines.runner import run

SAMPLES = Path("/work/shared/data/samples/bench.parquet")


def vectors(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).reshape(-1)),
                                             x.shape[1])


def build(work: Path, noise: float, seed: int) -> tuple[Path, Path, float]:
    """The pool with its four vector columns, and the reference head (reused from `work`
    when an earlier run with the same noise and seed made them)."""
    folder, head = work / f"in-{noise}-{seed}", work / f"ref-head-{noise}-{seed}.npz"
    if (folder / "pool.parquet").exists() and head.exists():
        noisy = pq.read_table(folder / "pool.parquet", columns=["noisy"])["noisy"]
        return folder, head, float(noisy.to_numpy(zero_copy_only=False).mean())
    table = pq.read_table(SAMPLES)
    prompts, answers = table["prompt"].to_pylist(), table["answer"].to_pylist()
    pool, clean = slice(0, 1000), slice(1000, len(prompts))
    rng = np.random.default_rng(seed)
    noisy = rng.random(1000) < noise
    repaired = np.arange(1000)
    idx = np.flatnonzero(noisy)
    repaired[idx] = idx[rng.permutation(len(idx))]  # mis-paired among the noisy rows
    noisy &= repaired != np.arange(1000)
    pool_answers = [answers[j] for j in repaired]
    cols = {"id": [f"g{i}" for i in range(1000)], "text": prompts[pool],
            "noisy": noisy.tolist()}
    for backend in ("static", "torch"):
        enc = load_encoder(None, backend)
        left, right = enc.encode(prompts[pool], 64), enc.encode(pool_answers, 64)
        cols[f"{backend}_left"], cols[f"{backend}_right"] = vectors(left), vectors(right)
        if backend == "torch":
            cl, cr = enc.encode(prompts[clean], 64), enc.encode(answers[clean], 64)
            w_l, w_r, t, b, _ = train_head(cl, cr, epochs=30, batch_size=64, seed=seed)
            save_head(head, w_l, w_r, t, b, {"backend": "torch", "trained_on": "gsm8k 1000-1318"})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), folder / "pool.parquet")
    return folder, head, float(noisy.mean())


def kept_noisy_share(folder: Path, out: Path, learner: str, reference: str, score: str) -> float:
    if out.exists():
        shutil.rmtree(out)
    loaded = parse_recipe(
        f"name: noise\ninput: {{path: '{folder}/*.parquet'}}\noutput: {{path: '{out}'}}\n"
        "execution: {engine: inprocess}\nsteps:\n  - op: select.jest\n    params: "
        f"{{super_batch: 200, filter_ratio: 0.8, chunks: 8, score: {score}, "
        f"learner: {learner}, reference: {reference}}}\n")
    run(loaded.run_spec(), loaded.operators)
    kept = pq.read_table(out, columns=["noisy"])["noisy"].to_numpy(zero_copy_only=False)
    return float(kept.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/jest-noise"))
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folder, head, share = build(args.work, args.noise, args.seed)
    static = "{columns: [static_left, static_right]}"
    torch_ = "{columns: [torch_left, torch_right]}"
    torch_head = f"{{columns: [torch_left, torch_right], head: '{head}'}}"
    arms = {"default (static / torch)": (static, torch_),
            "static / torch + head": (static, torch_head),
            "torch / torch + head": (torch_, torch_head)}
    print(f"pool: 1000 pairs, noisy share {share:.3f}; load {os.getloadavg()[0]:.1f}")
    for name, (learner, reference) in arms.items():
        shares = {score: kept_noisy_share(folder, args.work / "out", learner, reference, score)
                  for score in ("learnability", "easy_reference", "hard_learner",
                                "independent")}
        print(f"{name:26s} " + "  ".join(f"{k}={v:.3f}" for k, v in shares.items()))


if __name__ == "__main__":
    main()
