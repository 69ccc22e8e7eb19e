"""JEST against random, independent, easy-reference and hard-learner batch selection on real
text pairs with a noisy pool (algorithms.md sections 1.7-1.8; write-up: benchmarks/jest.md).

    .venv/bin/python benchmarks/jest_experiment_data.py --work /tmp/curate-jest   # once
    nice -n 10 .venv/bin/python benchmarks/jest_experiment.py --steps 50 --lr 3e-3 \
        --eval-every 10 --ref-steps 300 --seeds 0 1 2 --grid full --clean-oracle \
        --out /tmp/curate-jest/grid.json

(benchmarks/jest.md ran the same grid split over 12 processes and combined them with
`--merge`.)

Data: Debian bookworm package descriptions, short -> long (jest_experiment_data.py), embedded
once with all-MiniLM-L6-v2. Split 80/10/10 into a train pool, a clean reference subset and a
clean held-out test set; `--noise` of the pool's pairs get another pool pair's long
description (a random permutation among them, fixed points re-drawn), recorded in a mask.

Learner: a two-tower head on the frozen embeddings, x -> normalise((I + D) x) per side
(D starts at zero, so step 0 is the zero-shot encoder up to SigLIP's t and bias), SigLIP
sigmoid loss with learnable t (init log 10) and bias (init -10), AdamW with weight decay
on D only (decay pulls towards the zero-shot map). Reference: the same head trained on the
clean reference subset (steps chosen on a 10% slice of that subset, never on test), frozen:
by default only its t and bias are fitted (`--reference calibrate`; the whole head trained
on the 3.6k reference pairs never beat the zero-shot map on that slice, see jest.md).

Each step of an arm draws a super-batch of B pool pairs (the same draws for every arm of a
seed), scores it with the learner's *current* weights and the cached reference embeddings,
keeps b = N·floor(B(1-f)/N) pairs and takes one AdamW step on them. Arms: random (uniform b
of the super-batch), independent (`score="independent"`: the diagonal of L - R only), and
JEST's blocked sampler on easy_reference, hard_learner and learnability
(curate.select.jest.select). Metrics on the whole held-out test set (query = short
description, candidates = every test long description): recall@1 and nDCG@10, every
`--eval-every` steps; the share of noisy pairs among the chosen; CPU seconds per step for
selection and for training apart.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curate.select import jest

ARMS = ("random", "independent", "easy_reference", "hard_learner", "learnability")
# the grid the brief asks for: every arm at f = 0.8; random, independent, JEST at 0.5 and 0.9
FULL_GRID = [(a, 0.8) for a in ARMS] + [(a, f) for f in (0.5, 0.9)
                                          for a in ("random", "independent", "learnability")]
PILOT_GRID = [("random", 0.8), ("learnability", 0.8)]
# what may differ between the result files `--merge` combines (one process per part)
SPLIT_ARGS = ("seeds", "out", "arms", "grid", "clean_oracle")


@dataclass
class Split:
    """Frozen MiniLM vectors (rows L2-normalised) of the three parts; `noisy` marks the
    train pool's re-paired rows."""
    train_q: np.ndarray
    train_p: np.ndarray
    noisy: np.ndarray
    ref_q: np.ndarray
    ref_p: np.ndarray
    test_q: np.ndarray
    test_p: np.ndarray


def make_split(short: np.ndarray, long: np.ndarray, noise: float, seed: int = 0) -> Split:
    """80/10/10 split by a seeded permutation; `noise` of the train pool re-paired."""
    n = len(short)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = n_ref = n // 10
    test, ref, train = order[:n_test], order[n_test:n_test + n_ref], order[n_test + n_ref:]
    train_p = long[train].copy()
    noisy_rows = rng.choice(len(train), int(round(noise * len(train))), replace=False)
    train_p[noisy_rows] = long[train][derangement(noisy_rows, rng)]
    noisy = np.zeros(len(train), bool)
    noisy[noisy_rows] = True
    return Split(short[train], train_p, noisy, short[ref], long[ref], short[test], long[test])


def derangement(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of `idx` with no element left in place (so every re-paired row is
    really mispaired): shuffle, then swap each fixed point with its neighbour."""
    perm = idx[rng.permutation(len(idx))]
    for i in np.flatnonzero(perm == idx):
        j = (i + 1) % len(idx)
        perm[i], perm[j] = perm[j], perm[i]
    assert len(idx) < 2 or not (perm == idx).any()
    return perm


class Head(torch.nn.Module):
    """Two towers x -> normalise((I + D) x), and SigLIP's log-scale and bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.dq = torch.nn.Parameter(torch.zeros(dim, dim))
        self.dp = torch.nn.Parameter(torch.zeros(dim, dim))
        self.log_t = torch.nn.Parameter(torch.tensor(float(np.log(jest.SIGLIP_SCALE))))
        self.bias = torch.nn.Parameter(torch.tensor(jest.SIGLIP_BIAS))

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fq = torch.nn.functional.normalize(q + q @ self.dq.T, dim=1)
        fp = torch.nn.functional.normalize(p + p @ self.dp.T, dim=1)
        return fq, fp

    def embed(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            fq, fp = self(torch.from_numpy(q), torch.from_numpy(p))
        return fq.numpy(), fp.numpy()

    @property
    def scale_bias(self) -> tuple[float, float]:
        return float(self.log_t.detach().exp()), float(self.bias.detach())


def siglip_loss(fq: torch.Tensor, fp: torch.Tensor, head: Head) -> torch.Tensor:
    """SigLIP's batch loss (section 1.3), sum of pair losses divided by the batch size."""
    z = head.log_t.exp() * fq @ fp.T + head.bias
    labels = 2 * torch.eye(len(z)) - 1
    return torch.nn.functional.softplus(-labels * z).sum() / len(z)


def optimiser(head: Head, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([{"params": [head.dq, head.dp], "weight_decay": weight_decay},
                              {"params": [head.log_t, head.bias], "weight_decay": 0.0}], lr=lr)


def retrieval(q: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Recall@1 and nDCG@10 of query i against every candidate, the true one being p[i]
    (one relevant item, so nDCG@10 = 1/log2(1 + rank) when rank <= 10)."""
    sims = q @ p.T
    rank = 1 + (sims > np.diagonal(sims)[:, None]).sum(axis=1)
    ndcg = np.where(rank <= 10, 1 / np.log2(1 + rank), 0.0)
    return {"recall@1": float((rank == 1).mean()), "ndcg@10": float(ndcg.mean())}


def train_reference(split: Split, steps: int, batch: int, lr: float, weight_decay: float,
                    mode: str = "calibrate", eval_every: int = 50, seed: int = 0
                    ) -> tuple[Head, dict]:
    """The reference head, trained on the clean reference subset only; the state with the
    lowest SigLIP loss on a 10% slice of that subset (never the test set) is kept.

    `mode` "full" trains the whole head; "calibrate" keeps the towers at the zero-shot
    map and fits only SigLIP's t and bias, so the reference's losses are calibrated to
    clean pairs (low on true pairs and on in-batch negatives, high on mispaired ones)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = len(split.ref_q)
    val = rng.permutation(n)
    val, fit = val[: n // 10], val[n // 10:]
    head = Head(split.ref_q.shape[1])
    if mode == "calibrate":
        head.dq.requires_grad_(False)
        head.dp.requires_grad_(False)
    opt = optimiser(head, lr, weight_decay)
    q, p = torch.from_numpy(split.ref_q), torch.from_numpy(split.ref_p)

    def validate() -> tuple[float, float]:
        with torch.no_grad():
            loss = float(siglip_loss(*head(q[val], p[val]), head))
        return loss, retrieval(*head.embed(split.ref_q[val], split.ref_p[val]))["recall@1"]

    loss0, r0 = validate()
    best = (loss0, 0, {k: v.clone() for k, v in head.state_dict().items()})
    curve = [{"step": 0, "val_loss": loss0, "val_recall@1": r0}]
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.choice(fit, min(batch, len(fit)), replace=False))
        loss = siglip_loss(*head(q[idx], p[idx]), head)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            val_loss, r1 = validate()
            curve.append({"step": step, "val_loss": val_loss, "val_recall@1": r1})
            if val_loss < best[0]:
                best = (val_loss, step, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    return head, {"mode": mode, "best_step": best[1], "val_loss": best[0],
                  "val_curve": curve, "fit_pairs": len(fit), "val_pairs": len(val)}


def run_arm(split: Split, ref_emb: tuple[np.ndarray, np.ndarray], ref_sb: tuple[float, float],
            arm: str, f: float, seed: int, steps: int, superbatch: int, chunks: int,
            lr: float, weight_decay: float, eval_every: int, clean_only: bool = False) -> dict:
    """One learner trained for `steps` on batches chosen by `arm`; its curve and costs.
    `clean_only` (arm random) draws super-batches from the clean pool rows only: an
    oracle that shows what the head can reach without noise."""
    torch.manual_seed(seed)
    head = Head(split.train_q.shape[1])
    opt = optimiser(head, lr, weight_decay)
    pool = np.flatnonzero(~split.noisy) if clean_only else np.arange(len(split.train_q))
    b = chunks * jest.chunk_size(superbatch, f, chunks)
    q_all, p_all = torch.from_numpy(split.train_q), torch.from_numpy(split.train_p)
    curve = [(0, retrieval(*head.embed(split.test_q, split.test_p)))]
    chosen_noisy = chosen_total = 0
    sel_cpu = train_cpu = 0.0
    for step in range(1, steps + 1):
        # the same super-batch for every arm of a seed (common random numbers)
        sb = pool[np.random.default_rng([seed, step]).choice(len(pool), superbatch,
                                                             replace=False)]
        t0 = time.process_time()
        if arm == "random":
            pick = np.random.default_rng([seed, step, 1]).permutation(superbatch)[:b]
        elif arm == "independent":
            lq, lp = head.embed(split.train_q[sb], split.train_p[sb])
            pick = independent_pick(lq, lp, ref_emb[0][sb], ref_emb[1][sb], head.scale_bias,
                                    ref_sb, f, chunks, np.random.default_rng([seed, step, 2]))
        else:
            # the learner's current weights score the super-batch (honest online scoring)
            lq, lp = head.embed(split.train_q[sb], split.train_p[sb])
            pick = jest.select(learner=(lq, lp), reference=(ref_emb[0][sb], ref_emb[1][sb]),
                               filter_ratio=f, chunks=chunks, score=arm,
                               seed=np.random.default_rng([seed, step, 2]),
                               learner_scale=head.scale_bias[0],
                               learner_bias=head.scale_bias[1],
                               reference_scale=ref_sb[0], reference_bias=ref_sb[1])
        t1 = time.process_time()
        idx = torch.from_numpy(sb[pick])
        loss = siglip_loss(*head(q_all[idx], p_all[idx]), head)
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_cpu += time.process_time() - t1
        sel_cpu += t1 - t0
        chosen_noisy += int(split.noisy[sb[pick]].sum())
        chosen_total += len(pick)
        if step % eval_every == 0 or step == steps:
            curve.append((step, retrieval(*head.embed(split.test_q, split.test_p))))
    return {"arm": arm + ("_clean_oracle" if clean_only else ""), "f": f, "seed": seed,
            "b": b, "B": superbatch, "steps": steps, "final": curve[-1][1],
            "curve": [{"step": s, **m} for s, m in curve],
            "noisy_share": chosen_noisy / chosen_total,
            "selection_cpu_s_per_step": sel_cpu / steps,
            "train_cpu_s_per_step": train_cpu / steps,
            "t_final": head.scale_bias[0], "bias_final": head.scale_bias[1]}


def independent_pick(lq: np.ndarray, lp: np.ndarray, rq: np.ndarray, rp: np.ndarray,
                     learner_sb: tuple[float, float], ref_sb: tuple[float, float], f: float,
                     chunks: int, rng: np.random.Generator) -> np.ndarray:
    """What `jest.select(score="independent")` draws, from the diagonals only: the
    independent score matrix is diag(L_kk - R_kk), so the B x B pair losses it would
    compute are not needed (O(B·d), not O(B²·d)); the same sampler draws from it."""
    def diag_loss(q: np.ndarray, p: np.ndarray, sb: tuple[float, float]) -> np.ndarray:
        return np.logaddexp(0.0, -(sb[0] * np.einsum("ij,ij->i", q, p) + sb[1]))
    d = diag_loss(lq, lp, learner_sb) - diag_loss(rq, rp, ref_sb)
    return jest.sample(np.diag(d), f, chunks, rng)


def speedup(random_curve: list[dict], other_curve: list[dict]) -> float | None:
    """Steps random needs for its final recall@1 / steps `other` needs for the same value
    (None when `other` never reaches it within the run)."""
    target = random_curve[-1]["recall@1"]
    steps_r = next(c["step"] for c in random_curve if c["recall@1"] >= target)
    steps_o = next((c["step"] for c in other_curve if c["recall@1"] >= target), None)
    return None if not steps_o else steps_r / steps_o


def summarise(runs: list[dict], zero_shot: dict) -> dict:
    """Per (arm, f): mean/min/max final recall@1 and nDCG@10, noisy share, CPU costs, and
    the requirement checks of the brief."""
    table: dict[str, dict] = {}
    for r in runs:
        table.setdefault(f"{r['arm']}@{r['f']}", []).append(r)
    out = {}
    for key, rs in table.items():
        r1 = [r["final"]["recall@1"] for r in rs]
        rand = table.get(f"random@{rs[0]['f']}")
        curves = {x["seed"]: x["curve"] for x in rand or [] if x["curve"]}
        speed = [speedup(curves[r["seed"]], r["curve"]) for r in rs
                 if r["curve"] and r["seed"] in curves and r["arm"] != "random_clean_oracle"]
        out[key] = {"arm": rs[0]["arm"], "f": rs[0]["f"], "b": rs[0]["b"],
                    "seeds": [r["seed"] for r in rs], "recall@1": r1,
                    "recall@1_mean": float(np.mean(r1)), "recall@1_min": min(r1),
                    "recall@1_max": max(r1),
                    "ndcg@10_mean": float(np.mean([r["final"]["ndcg@10"] for r in rs])),
                    "noisy_share_mean": float(np.mean([r["noisy_share"] for r in rs])),
                    "selection_cpu_s_per_step": float(np.mean(
                        [r["selection_cpu_s_per_step"] for r in rs])),
                    "train_cpu_s_per_step": float(np.mean([r["train_cpu_s_per_step"]
                                                           for r in rs])),
                    "speedup_vs_random": speed}
    checks = {}
    for f in sorted({r["f"] for r in runs}):
        j, rnd, ind = (out.get(f"{a}@{f}") for a in ("learnability", "random", "independent"))
        if j and rnd:
            checks[f"f={f}"] = {
                "jest_minus_random": j["recall@1_mean"] - rnd["recall@1_mean"],
                "gap>=0.05": j["recall@1_mean"] - rnd["recall@1_mean"] >= 0.05,
                "seed_ranges_disjoint": j["recall@1_min"] > rnd["recall@1_max"],
                "jest_noisy_share<=0.15": j["noisy_share_mean"] <= 0.15,
                "jest_beats_zero_shot": j["recall@1_min"] > zero_shot["recall@1"],
                "jest_minus_independent": (j["recall@1_mean"] - ind["recall@1_mean"]
                                           if ind else None)}
    return {"arms": out, "checks": checks}


def markdown(summary: dict, zero_shot: dict, reference: dict) -> str:
    lines = [f"Zero-shot MiniLM: recall@1 {zero_shot['recall@1']:.4f}, nDCG@10 "
             f"{zero_shot['ndcg@10']:.4f}. Reference head ({reference['mode']}, t "
             f"{reference['scale_bias'][0]:.1f}, bias {reference['scale_bias'][1]:.1f}) on "
             f"test: recall@1 {reference['test']['recall@1']:.4f}.", "",
             "| arm | f | b | recall@1 mean | min-max over seeds | nDCG@10 | noisy share "
             "| speed-up vs random | select CPU s/step | train CPU s/step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary["arms"].values(), key=lambda s: (s["f"], ARMS.index(s["arm"])
                                                             if s["arm"] in ARMS else 9)):
        sp = ", ".join("never" if x is None else f"{x:.2f}" for x in s["speedup_vs_random"])
        lines.append(f"| {s['arm']} | {s['f']} | {s['b']} | {s['recall@1_mean']:.4f} | "
                     f"{s['recall@1_min']:.4f}-{s['recall@1_max']:.4f} | "
                     f"{s['ndcg@10_mean']:.4f} | {s['noisy_share_mean']:.3f} | {sp or '-'} | "
                     f"{s['selection_cpu_s_per_step']:.3f} | {s['train_cpu_s_per_step']:.3f} |")
    lines += ["", "| f | JEST - random | >= 0.05 | seed ranges disjoint | JEST noisy <= 15% "
              "| JEST > zero-shot | JEST - independent |", "|---|---|---|---|---|---|---|"]
    for f, c in summary["checks"].items():
        ji = c["jest_minus_independent"]
        lines.append(f"| {f} | {c['jest_minus_random']:+.4f} | {c['gap>=0.05']} | "
                     f"{c['seed_ranges_disjoint']} | {c['jest_noisy_share<=0.15']} | "
                     f"{c['jest_beats_zero_shot']} | "
                     f"{'-' if ji is None else f'{ji:+.4f}'} |")
    return "\n".join(lines) + "\n"


def read_part(path: Path) -> dict:
    """A result JSON, or the log of a run cut short: its first line (data, zero-shot,
    reference) and one line per finished arm, which carry no curve."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]
    head = lines[0]
    return {"args": None, "data": {k: head[k] for k in ("pairs", "train", "noisy", "ref",
                                                       "test")},
            "zero_shot": head["zero_shot"], "reference": head["reference"],
            "runs": [{**r, "curve": None} for r in lines[1:]], "cpu_s": None, "wall_s": None}


def merge(paths: list[Path], out: Path | None) -> None:
    """One summary over the runs of several result files (e.g. one process per seed and
    group of arms); logs of runs cut short add their finished arms, without curves."""
    parts = [read_part(p) for p in paths]
    first = next((part for part in parts if part["args"]), parts[0])
    for p, part in zip(paths, parts, strict=True):
        if part["args"] is None:
            continue
        same = {k: v for k, v in part["args"].items() if k not in SPLIT_ARGS}
        if same != {k: v for k, v in first["args"].items() if k not in SPLIT_ARGS}:
            raise ValueError(f"{p} was run with other settings than {paths[0]}")
    # an arm run twice (the same seed in two overlapping parts: identical draws) counts once
    runs = list({(r["arm"], r["f"], r["seed"]): r for part in reversed(parts)
                 for r in part["runs"]}.values())
    summary = summarise(runs, first["zero_shot"])
    result = {**first, "summary": summary, "runs": runs, "merged_from": [str(p) for p in paths],
              "cpu_s_per_part": [part["cpu_s"] for part in parts],
              "wall_s_per_part": [part["wall_s"] for part in parts]}
    table = markdown(summary, first["zero_shot"], first["reference"])
    print(table)
    if out:
        out.write_text(json.dumps(result, indent=1))
        out.with_suffix(".md").write_text(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-jest"))
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--superbatch", type=int, default=4096)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--reference", choices=("calibrate", "full"), default="calibrate")
    ap.add_argument("--ref-steps", type=int, default=500)
    ap.add_argument("--ref-batch", type=int, default=512)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--grid", choices=("pilot", "full"), default="pilot")
    ap.add_argument("--arms", nargs="*", help="arm@f pairs instead of --grid, e.g. random@0.8")
    ap.add_argument("--clean-oracle", action="store_true",
                    help="also train random batches from the clean pool rows only, per f")
    ap.add_argument("--ref-lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 costs a quarter of the CPU time of 2 here)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--merge", type=Path, nargs="+",
                    help="combine result JSONs (or logs of runs cut short) of one setup, run "
                         "as several processes, into --out")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(args.threads)
    short, long = np.load(args.work / "short.npy"), np.load(args.work / "long.npy")
    split = make_split(short, long, args.noise)
    zero_shot = retrieval(split.test_q, split.test_p)
    ref_head, ref_info = train_reference(split, args.ref_steps, args.ref_batch,
                                         args.ref_lr, args.weight_decay, args.reference)
    ref_info["test"] = retrieval(*ref_head.embed(split.test_q, split.test_p))
    ref_info["scale_bias"] = ref_head.scale_bias
    ref_emb = ref_head.embed(split.train_q, split.train_p)
    print(json.dumps({"pairs": len(short), "train": len(split.train_q),
                      "noisy": int(split.noisy.sum()), "ref": len(split.ref_q),
                      "test": len(split.test_q), "zero_shot": zero_shot,
                      "reference": {k: v for k, v in ref_info.items() if k != "val_curve"}}),
          flush=True)
    grid = ([(a.split("@")[0], float(a.split("@")[1])) for a in args.arms] if args.arms
            else FULL_GRID if args.grid == "full" else PILOT_GRID)
    runs = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for seed in args.seeds:
        jobs = [(a, f, False) for a, f in grid]
        if args.clean_oracle:
            jobs += [("random", f, True) for f in sorted({f for _, f in grid})]
        for arm, f, clean in jobs:
            r = run_arm(split, ref_emb, ref_head.scale_bias, arm, f, seed, args.steps,
                        args.superbatch, args.chunks, args.lr, args.weight_decay,
                        args.eval_every, clean_only=clean)
            runs.append(r)
            print(json.dumps({k: r[k] for k in ("arm", "f", "seed", "b", "final", "noisy_share",
                                                 "selection_cpu_s_per_step",
                                                 "train_cpu_s_per_step")}), flush=True)
    summary = summarise(runs, zero_shot)
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "data": {"pairs": len(short), "train": len(split.train_q),
                       "noisy": int(split.noisy.sum()), "ref": len(split.ref_q),
                       "test": len(split.test_q)},
              "zero_shot": zero_shot, "reference": ref_info, "summary": summary, "runs": runs,
              "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
              "load_avg": os.getloadavg(), "cpus": os.cpu_count()}
    table = markdown(summary, zero_shot, ref_info)
    print(table)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
