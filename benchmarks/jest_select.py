"""Time one JEST selection step (curate.select.jest.select) on a super-batch.

    .venv/bin/python benchmarks/jest_select.py --batch 4096 --dim 384 --rounds 5

Random unit embeddings (the cost does not depend on their values): the learner's and the
reference's (B, d) left/right matrices, then pair losses (two B x B matmuls and
softplus), the learnability matrix and the blocked sampler. Prints the best and median
round, split into scoring and sampling, with the thread count numpy's BLAS used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from curate.select import jest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--filter-ratio", type=float, default=0.8)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    emb = [rng.standard_normal((args.batch, args.dim)).astype(np.float32) for _ in range(4)]
    totals, scoring, sampling = [], [], []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        s = jest.score_matrix(jest.pair_losses(emb[0], emb[1]), jest.pair_losses(emb[2], emb[3]))
        t1 = time.perf_counter()
        chosen = jest.sample(s, args.filter_ratio, args.chunks, seed=r)
        t2 = time.perf_counter()
        scoring.append(t1 - t0)
        sampling.append(t2 - t1)
        totals.append(t2 - t0)
    print(f"B={args.batch} d={args.dim} f={args.filter_ratio} N={args.chunks} "
          f"b={len(chosen)} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    for name, xs in (("select (total)", totals), ("  scoring", scoring),
                     ("  sampling", sampling)):
        print(f"{name:16s} best {min(xs):.3f} s  median {statistics.median(xs):.3f} s")


if __name__ == "__main__":
    main()
