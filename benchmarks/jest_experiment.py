"""JEST against random, independent, easy-reference and hard-learner batch selection on real
text pairs with a noisy pool (algorithms.md sections 1.7-1.8; write-up: benchmarks/jest.md).

    .venv/bin/python benchmarks/jest_experiment_data.py --work /tmp/curate-jest   # once
    nice -n 10 .venv/bin/python benchmarks/jest_experiment.py --out /tmp/curate-jest/grid.json

(the defaults are the grid of jest.md: every arm at f = 0.8, random / independent /
learnability at 0.5 and 0.9, a clean-only random oracle per f, seeds 0 1 2, T = 100.)

Data: Debian bookworm package descriptions, short -> long (jest_experiment_data.py), embedded
once with all-MiniLM-L6-v2 and once with curate's `static` backend (a model2vec distillation
of MiniLM, much weaker), plus each text's hashed distinct words (tokens.npz). Split
70/10/10/10 into a train pool, a clean reference subset (`--ref-frac`), a clean validation
set (pilots and hyper-parameters are read on it) and a clean held-out test set; `--noise`
of the pool's pairs get another pool pair's long description (a derangement among them),
recorded in a mask.

Learner (`Head`, the defaults since the third grid of jest.md): per side,
normalise([x + D x ; bow(text)]): x the frozen *static* vector, centred on the train pool
(`--centre`; the static model is anisotropic), D a trainable 384 x 384 map (starts at 0,
`--linear`), bow a trainable hashed bag-of-words vector (2^18 buckets x 64 dims, one table
per tower, sum of the text's distinct words' rows / sqrt(count), initialised at std 0.01),
so step 0 is the frozen encoder's zero-shot to within ~1e-4. SigLIP sigmoid loss with
learnable t (init 10) and bias (init -10); AdamW (lr 1e-2) on D, t and bias, SparseAdam
(lr 3e-3) on the word tables. The earlier grids' learner (frozen MiniLM, words only) is
`--frozen minilm --no-linear`; `--frozen none` is the word tables alone. Reference: by
default the zero-shot *MiniLM* map with only SigLIP's t and bias fitted on the clean
reference subset (`--reference calibrate`), whatever the learner's frozen part;
`--reference learner` trains the learner's architecture there (state chosen by the SigLIP
loss on a 10% slice of that subset, never val or test).

Each step of an arm draws a super-batch of B pool pairs (the same draws for every arm of a
seed), scores it with the learner's *current* weights and the cached reference embeddings,
keeps b = N·floor(B(1-f)/N) pairs and takes one optimiser step on them. Arms: random (uniform b
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
DEFAULT_FROZEN = "static"
# what may differ between the result files `--merge` combines (one process per part)
SPLIT_ARGS = ("seeds", "out", "arms", "grid", "clean_oracle")


@dataclass
class Bags:
    """Ragged word ids (already reduced modulo the hash buckets): text i is
    ids[offsets[i]:offsets[i + 1]]."""
    ids: np.ndarray
    offsets: np.ndarray

    def gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """EmbeddingBag inputs for texts `rows`: flat ids, bag offsets and per-word
        weights 1/sqrt(len(bag)) (so a bag's vector keeps about one word's norm)."""
        rows = np.asarray(rows)
        start, length = self.offsets[rows], np.diff(self.offsets)[rows]
        bag_off = np.zeros(len(rows), np.int64)
        np.cumsum(length[:-1], out=bag_off[1:])
        flat = np.repeat(start - bag_off, length) + np.arange(int(length.sum()))
        weights = np.repeat(1 / np.sqrt(np.maximum(length, 1)), length).astype(np.float32)
        return (torch.from_numpy(self.ids[flat]), torch.from_numpy(bag_off),
                torch.from_numpy(weights))


@dataclass
class Pairs:
    """All pairs: frozen MiniLM vectors (rows L2-normalised) and word bags per side."""
    q: np.ndarray
    p: np.ndarray
    q_bags: Bags
    p_bags: Bags


# the learner's frozen part (`--frozen`): the files of jest_experiment_data.py, or None
FROZEN = {"minilm": ("short.npy", "long.npy"), "static": ("short_static.npy", "long_static.npy"),
          "none": None}


def load_pairs(work: Path, buckets: int, frozen: str = "minilm") -> Pairs:
    """The pairs with `frozen`'s vectors (FROZEN; "none": 0-dim vectors, so a tower is its
    word table alone) and the word bags."""
    import jest_experiment_data as data

    tok = np.load(data.build_tokens(work))
    bags = {side: Bags((tok[f"{side}_ids"] % buckets).astype(np.int64),
                       tok[f"{side}_offsets"]) for side in ("short", "long")}
    n = len(tok["short_offsets"]) - 1
    files = FROZEN[frozen]
    q, p = ((np.zeros((n, 0), np.float32),) * 2 if files is None
            else (np.load(work / files[0]), np.load(work / files[1])))
    return Pairs(q, p, bags["short"], bags["long"])


def centred(pairs: Pairs, q_rows: np.ndarray, p_rows: np.ndarray) -> Pairs:
    """`pairs` with each side's frozen vectors minus its mean over `q_rows` / `p_rows` (the
    train pool, never val or test), re-normalised. The static model is anisotropic (the
    mean cosine of two unrelated texts is 0.79 here), so uncentred its SigLIP logits start
    far too high and the word tables' first steps wreck it; centring removes that offset."""
    def one(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        c = x - x[rows].mean(axis=0)
        return (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
                ).astype(np.float32)
    return Pairs(one(pairs.q, q_rows), one(pairs.p, p_rows), pairs.q_bags, pairs.p_bags)


def frozen_zero_shot(pairs: Pairs, rows: np.ndarray) -> dict[str, float]:
    """Retrieval of the frozen vectors alone on `rows`; with no frozen part (0 dims) every
    score ties, so it is chance: recall@1 = 1/n and nDCG@10 that of a uniform rank."""
    if pairs.q.shape[1]:
        return retrieval(pairs.q[rows], pairs.p[rows])
    n = len(rows)
    top = np.arange(1, min(n, 10) + 1)
    return {"recall@1": 1 / n, "ndcg@10": float((1 / np.log2(1 + top)).sum() / n)}


@dataclass
class Split:
    """Row ids into `Pairs`. Train pool pair j is query train_q[j] with passage
    train_p[j]; `noisy` marks the re-paired ones (train_p[j] != train_q[j]). ref, val
    and test are clean pairs (query i with passage i)."""
    train_q: np.ndarray
    train_p: np.ndarray
    noisy: np.ndarray
    ref: np.ndarray
    val: np.ndarray
    test: np.ndarray


def make_split(n: int, noise: float, seed: int = 0, ref_frac: float = 0.1,
               val_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Test / validation / reference / train pool by a seeded permutation of the n pairs;
    `noise` of the pool re-paired by a derangement (every noisy pair is mispaired)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test, n_val, n_ref = (int(n * x) for x in (test_frac, val_frac, ref_frac))
    test, val = order[:n_test], order[n_test:n_test + n_val]
    ref, train = order[n_test + n_val:n_test + n_val + n_ref], order[n_test + n_val + n_ref:]
    train_p = train.copy()
    noisy_rows = rng.choice(len(train), int(round(noise * len(train))), replace=False)
    train_p[noisy_rows] = train[derangement(noisy_rows, rng)]
    noisy = np.zeros(len(train), bool)
    noisy[noisy_rows] = True
    return Split(train, train_p, noisy, ref, val, test)


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
    """The two towers and SigLIP's log-scale and bias. A tower maps a text to
    normalise([x + D x ; bow(text)]): x its frozen vector (`--frozen`), D a 384 x 384 map
    (only with `linear`, starts at 0) and bow a hashed bag-of-words vector (`bow_dim`
    dims; 0 = none): sum over the text's distinct words of a trainable per-bucket vector,
    divided by sqrt(word count). With `shared` the two towers use one word table, so a
    word on both sides adds its squared norm to the pair's score (a weighted lexical
    match); the experiment's default (Config.shared False) is one table per tower, which
    must learn query-word / passage-word associations from the pairs. Initialised at
    `init_std`, so step 0 is the zero-shot encoder to within ~init_std² (exactly it when
    bow_dim is 0 and D is 0)."""

    def __init__(self, dim: int, bow_dim: int = 0, buckets: int = 1 << 18,
                 init_std: float = 0.01, linear: bool = False, shared: bool = True,
                 seed: int = 0):
        super().__init__()
        self.linear, self.bow_dim = linear, bow_dim
        if linear:
            self.dq = torch.nn.Parameter(torch.zeros(dim, dim))
            self.dp = torch.nn.Parameter(torch.zeros(dim, dim))
        if bow_dim:
            gen = torch.Generator().manual_seed(seed)
            tables = [torch.nn.EmbeddingBag(buckets, bow_dim, mode="sum", sparse=True)
                      for _ in range(1 if shared else 2)]
            for t in tables:
                with torch.no_grad():
                    t.weight.copy_(torch.randn(buckets, bow_dim, generator=gen) * init_std)
            self.bow_q, self.bow_p = tables[0], tables[-1]
        self.log_t = torch.nn.Parameter(torch.tensor(float(np.log(jest.SIGLIP_SCALE))))
        self.bias = torch.nn.Parameter(torch.tensor(jest.SIGLIP_BIAS))

    def tower(self, x: torch.Tensor, bags: tuple | None, side: str) -> torch.Tensor:
        if self.linear:
            x = x + x @ (self.dq if side == "q" else self.dp).T
        if self.bow_dim:
            table = self.bow_q if side == "q" else self.bow_p
            ids, offsets, weights = bags
            x = torch.cat([x, table(ids, offsets, per_sample_weights=weights)], dim=1)
        return torch.nn.functional.normalize(x, dim=1)

    def encode(self, pairs: Pairs, q_rows: np.ndarray, p_rows: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Learner embeddings of queries `q_rows` and passages `p_rows` (with grad)."""
        bow = self.bow_dim > 0
        fq = self.tower(torch.from_numpy(pairs.q[q_rows]),
                        pairs.q_bags.gather(q_rows) if bow else None, "q")
        fp = self.tower(torch.from_numpy(pairs.p[p_rows]),
                        pairs.p_bags.gather(p_rows) if bow else None, "p")
        return fq, fp

    def embed(self, pairs: Pairs, q_rows: np.ndarray, p_rows: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            fq, fp = self.encode(pairs, q_rows, p_rows)
        return fq.numpy(), fp.numpy()

    def dense_params(self) -> list[torch.nn.Parameter]:
        return [self.dq, self.dp] if self.linear else []

    def bow_params(self) -> list[torch.nn.Parameter]:
        if not self.bow_dim:
            return []
        return list(dict.fromkeys([self.bow_q.weight, self.bow_p.weight]))

    @property
    def scale_bias(self) -> tuple[float, float]:
        return float(self.log_t.detach().exp()), float(self.bias.detach())


def siglip_loss(fq: torch.Tensor, fp: torch.Tensor, head: Head) -> torch.Tensor:
    """SigLIP's batch loss (section 1.3), sum of pair losses divided by the batch size."""
    z = head.log_t.exp() * fq @ fp.T + head.bias
    labels = 2 * torch.eye(len(z)) - 1
    return torch.nn.functional.softplus(-labels * z).sum() / len(z)


class Optimiser:
    """AdamW on D (weight decay pulls it back to the zero-shot map), t and bias;
    SparseAdam on the word table (only the rows a batch touches move)."""

    def __init__(self, head: Head, lr: float, lr_bow: float, weight_decay: float,
                 calibrate_only: bool = False):
        dense = [] if calibrate_only else head.dense_params()
        groups = [{"params": [head.log_t, head.bias], "weight_decay": 0.0}]
        if dense:
            groups.append({"params": dense, "weight_decay": weight_decay})
        self.opts = [torch.optim.AdamW(groups, lr=lr)]
        if head.bow_params() and not calibrate_only:
            self.opts.append(torch.optim.SparseAdam(head.bow_params(), lr=lr_bow))
        for p in (head.dense_params() + head.bow_params() if calibrate_only else []):
            p.requires_grad_(False)

    def step(self, loss: torch.Tensor) -> None:
        for o in self.opts:
            o.zero_grad()
        loss.backward()
        for o in self.opts:
            o.step()


def retrieval(q: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Recall@1 and nDCG@10 of query i against every candidate, the true one being p[i]
    (one relevant item, so nDCG@10 = 1/log2(1 + rank) when rank <= 10)."""
    sims = q @ p.T
    rank = 1 + (sims > np.diagonal(sims)[:, None]).sum(axis=1)
    ndcg = np.where(rank <= 10, 1 / np.log2(1 + rank), 0.0)
    return {"recall@1": float((rank == 1).mean()), "ndcg@10": float(ndcg.mean())}


@dataclass
class Config:
    """The learner's (or reference's) architecture and optimiser; the defaults are the
    experiment's (the command line's defaults are read from here)."""
    bow_dim: int = 64
    buckets: int = 1 << 18
    init_std: float = 0.01
    linear: bool = True
    lr: float = 1e-2
    lr_bow: float = 3e-3
    weight_decay: float = 1e-4
    shared: bool = False

    def head(self, dim: int, seed: int) -> Head:
        return Head(dim, self.bow_dim, self.buckets, self.init_std, self.linear, self.shared,
                    seed=seed)


def train_reference(pairs: Pairs, split: Split, cfg: Config, steps: int, batch: int,
                    mode: str = "calibrate", eval_every: int = 50, seed: int = 0
                    ) -> tuple[Head, dict]:
    """The reference, trained on the clean reference subset only; the state with the
    lowest SigLIP loss on a 10% slice of that subset (never val or test) is kept.

    `mode` "calibrate": the zero-shot MiniLM map (no word table, no D), only SigLIP's t
    and bias fitted, so its losses are calibrated to clean pairs. "learner": the
    learner's architecture (`cfg`), every parameter trained."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = split.ref[rng.permutation(len(split.ref))]
    val, fit = rows[: len(rows) // 10], rows[len(rows) // 10:]
    if mode == "calibrate":
        cfg = Config(bow_dim=0, linear=False, lr=cfg.lr, lr_bow=cfg.lr_bow)
    head = cfg.head(pairs.q.shape[1], seed=10_000 + seed)
    opt = Optimiser(head, cfg.lr, cfg.lr_bow, cfg.weight_decay)

    def validate() -> tuple[float, float]:
        with torch.no_grad():
            fq, fp = head.encode(pairs, val, val)
            loss = float(siglip_loss(fq, fp, head))
        return loss, retrieval(fq.numpy(), fp.numpy())["recall@1"]

    loss0, r0 = validate()
    best = (loss0, 0, {k: v.clone() for k, v in head.state_dict().items()})
    curve = [{"step": 0, "val_loss": loss0, "val_recall@1": r0}]
    for step in range(1, steps + 1):
        idx = rng.choice(fit, min(batch, len(fit)), replace=False)
        opt.step(siglip_loss(*head.encode(pairs, idx, idx), head))
        if step % eval_every == 0:
            val_loss, r1 = validate()
            curve.append({"step": step, "val_loss": val_loss, "val_recall@1": r1})
            if val_loss < best[0]:
                best = (val_loss, step, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    return head, {"mode": mode, "best_step": best[1], "val_loss": best[0],
                  "val_curve": curve, "fit_pairs": len(fit), "val_pairs": len(val)}


def evaluate(head: Head, pairs: Pairs, split: Split) -> dict[str, float]:
    """Test recall@1 / nDCG@10 and validation recall@1 (the slice pilots are read on)."""
    test = retrieval(*head.embed(pairs, split.test, split.test))
    return {**test, "val_recall@1": retrieval(*head.embed(pairs, split.val,
                                                          split.val))["recall@1"]}


def run_arm(pairs: Pairs, split: Split, ref_emb: tuple[np.ndarray, np.ndarray],
            ref_sb: tuple[float, float], arm: str, f: float, seed: int, steps: int,
            superbatch: int, chunks: int, cfg: Config, eval_every: int,
            clean_only: bool = False) -> dict:
    """One learner trained for `steps` on batches chosen by `arm`; its curve and costs.
    `clean_only` (arm random) draws super-batches from the clean pool rows only: an
    oracle that shows what the learner can reach without noise."""
    torch.manual_seed(seed)
    head = cfg.head(pairs.q.shape[1], seed=seed)
    opt = Optimiser(head, cfg.lr, cfg.lr_bow, cfg.weight_decay)
    pool = np.flatnonzero(~split.noisy) if clean_only else np.arange(len(split.train_q))
    b = chunks * jest.chunk_size(superbatch, f, chunks)
    curve = [(0, evaluate(head, pairs, split))]
    chosen_noisy = chosen_total = 0
    sel_cpu = train_cpu = 0.0
    for step in range(1, steps + 1):
        # the same super-batch for every arm of a seed (common random numbers)
        sb = pool[np.random.default_rng([seed, step]).choice(len(pool), superbatch,
                                                             replace=False)]
        t0 = time.process_time()
        if arm == "random":
            pick = np.random.default_rng([seed, step, 1]).permutation(superbatch)[:b]
        else:
            # the learner's current weights score the super-batch (honest online scoring)
            lq, lp = head.embed(pairs, split.train_q[sb], split.train_p[sb])
            rng = np.random.default_rng([seed, step, 2])
            if arm == "independent":
                pick = independent_pick(lq, lp, ref_emb[0][sb], ref_emb[1][sb],
                                        head.scale_bias, ref_sb, f, chunks, rng)
            else:
                pick = jest.select(learner=(lq, lp), reference=(ref_emb[0][sb], ref_emb[1][sb]),
                                   filter_ratio=f, chunks=chunks, score=arm, seed=rng,
                                   learner_scale=head.scale_bias[0],
                                   learner_bias=head.scale_bias[1],
                                   reference_scale=ref_sb[0], reference_bias=ref_sb[1])
        t1 = time.process_time()
        idx = sb[pick]
        opt.step(siglip_loss(*head.encode(pairs, split.train_q[idx], split.train_p[idx]), head))
        train_cpu += time.process_time() - t1
        sel_cpu += t1 - t0
        chosen_noisy += int(split.noisy[idx].sum())
        chosen_total += len(pick)
        if step % eval_every == 0 or step == steps:
            curve.append((step, evaluate(head, pairs, split)))
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


def speedup(random_curve: list[dict], other_curve: list[dict]) -> float | str | None:
    """Steps random needs for its final recall@1 / steps `other` needs for the same value
    (None when `other` never reaches it within the run; "undefined" when random ends at or
    below its step-0 value, so that any arm "reaches" it at step 0)."""
    target = random_curve[-1]["recall@1"]
    if target <= random_curve[0]["recall@1"]:
        return "undefined"
    steps_r = next(c["step"] for c in random_curve if c["recall@1"] >= target)
    steps_o = next((c["step"] for c in other_curve if c["recall@1"] >= target), None)
    return None if not steps_o else steps_r / steps_o


def summarise(runs: list[dict], zero_shot: dict, minilm_zero_shot: dict | None = None) -> dict:
    """Per (arm, f): mean/min/max final recall@1 and nDCG@10, noisy share, CPU costs, and
    the requirement checks of the brief (`zero_shot`: the learner's frozen encoder's;
    `minilm_zero_shot`, when given: MiniLM's, checked for context only)."""
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
                    "val_recall@1_mean": float(np.mean([r["final"].get("val_recall@1", np.nan)
                                                        for r in rs])),
                    "noisy_share_mean": float(np.mean([r["noisy_share"] for r in rs])),
                    "selection_cpu_s_per_step": float(np.mean(
                        [r["selection_cpu_s_per_step"] for r in rs])),
                    "train_cpu_s_per_step": float(np.mean([r["train_cpu_s_per_step"]
                                                           for r in rs])),
                    "speedup_vs_random": speed}
    checks = {}
    for f in sorted({r["f"] for r in runs}):
        j, rnd, ind, orc = (out.get(f"{a}@{f}") for a in ("learnability", "random",
                                                           "independent", "random_clean_oracle"))
        if j and rnd:
            checks[f"f={f}"] = {
                "jest_minus_random": j["recall@1_mean"] - rnd["recall@1_mean"],
                "gap>=0.05": j["recall@1_mean"] - rnd["recall@1_mean"] >= 0.05,
                "seed_ranges_disjoint": j["recall@1_min"] > rnd["recall@1_max"],
                "jest_noisy_share<=0.15": j["noisy_share_mean"] <= 0.15,
                "jest_beats_zero_shot": j["recall@1_min"] > zero_shot["recall@1"],
                "random_beats_zero_shot": rnd["recall@1_min"] > zero_shot["recall@1"],
                "jest_beats_minilm_zero_shot": (j["recall@1_min"] > minilm_zero_shot["recall@1"]
                                                if minilm_zero_shot else None),
                "oracle_minus_random": (orc["recall@1_mean"] - rnd["recall@1_mean"]
                                        if orc else None),
                "jest_minus_independent": (j["recall@1_mean"] - ind["recall@1_mean"]
                                           if ind else None)}
    return {"arms": out, "checks": checks}


def markdown(summary: dict, zero_shot: dict, reference: dict,
             minilm_zero_shot: dict | None = None) -> str:
    """The arms table and the requirement checks, as markdown."""
    encoder = zero_shot.get("encoder", "minilm")
    head = (f"Zero-shot of the learner's frozen encoder ({encoder}): recall@1 "
            f"{zero_shot['recall@1']:.4f}, nDCG@10 {zero_shot['ndcg@10']:.4f}.")
    if minilm_zero_shot and encoder != "minilm":
        head += (f" Zero-shot MiniLM (context): recall@1 {minilm_zero_shot['recall@1']:.4f}, "
                 f"nDCG@10 {minilm_zero_shot['ndcg@10']:.4f}.")
    lines = [head + f" Reference head ({reference['mode']}, t "
             f"{reference['scale_bias'][0]:.1f}, bias {reference['scale_bias'][1]:.1f}) on "
             f"test: recall@1 {reference['test']['recall@1']:.4f}.", "",
             "| arm | f | b | recall@1 mean | min-max over seeds | nDCG@10 | val recall@1 "
             "| noisy share | speed-up vs random | select CPU s/step | train CPU s/step |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary["arms"].values(), key=lambda s: (s["f"], ARMS.index(s["arm"])
                                                             if s["arm"] in ARMS else 9)):
        sp = ", ".join("never" if x is None else x if isinstance(x, str) else f"{x:.2f}"
                       for x in s["speedup_vs_random"])
        lines.append(f"| {s['arm']} | {s['f']} | {s['b']} | {s['recall@1_mean']:.4f} | "
                     f"{s['recall@1_min']:.4f}-{s['recall@1_max']:.4f} | "
                     f"{s['ndcg@10_mean']:.4f} | {s.get('val_recall@1_mean', float('nan')):.4f} | "
                     f"{s['noisy_share_mean']:.3f} | {sp or '-'} | "
                     f"{s['selection_cpu_s_per_step']:.3f} | {s['train_cpu_s_per_step']:.3f} |")
    lines += ["", "| f | JEST - random | >= 0.05 | seed ranges disjoint | JEST noisy <= 15% "
              f"| JEST > {encoder} zero-shot (every seed) | random > {encoder} zero-shot "
              "(every seed) | JEST > MiniLM zero-shot (every seed) | JEST - independent "
              "| clean oracle - random |",
              "|---|---|---|---|---|---|---|---|---|---|"]

    def signed(x: float | None) -> str:
        return "-" if x is None else f"{x:+.4f}"
    for f, c in summary["checks"].items():
        lines.append(f"| {f} | {c['jest_minus_random']:+.4f} | {c['gap>=0.05']} | "
                     f"{c['seed_ranges_disjoint']} | {c['jest_noisy_share<=0.15']} | "
                     f"{c['jest_beats_zero_shot']} | {c.get('random_beats_zero_shot')} | "
                     f"{c.get('jest_beats_minilm_zero_shot', '-')} | "
                     f"{signed(c['jest_minus_independent'])} | "
                     f"{signed(c.get('oracle_minus_random'))} |")
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
            "zero_shot": head["zero_shot"], "minilm_zero_shot": head.get("minilm_zero_shot"),
            "reference": head["reference"],
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
    summary = summarise(runs, first["zero_shot"], first.get("minilm_zero_shot"))
    result = {**first, "summary": summary, "runs": runs, "merged_from": [str(p) for p in paths],
              "cpu_s_per_part": [part["cpu_s"] for part in parts],
              "wall_s_per_part": [part["wall_s"] for part in parts]}
    table = markdown(summary, first["zero_shot"], first["reference"],
                     first.get("minilm_zero_shot"))
    print(table)
    if out:
        out.write_text(json.dumps(result, indent=1))
        out.with_suffix(".md").write_text(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-jest"))
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--superbatch", type=int, default=4096)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--frozen", choices=tuple(FROZEN), default=DEFAULT_FROZEN,
                    help="the learner's frozen part: static (curate's distilled static "
                         "MiniLM), minilm (the earlier grids' learner) or none (words only); "
                         "the calibrate reference is MiniLM in every case")
    ap.add_argument("--centre", action=argparse.BooleanOptionalAction, default=None,
                    help="centre the learner's frozen vectors on the train pool (default: "
                         "only for static)")
    ap.add_argument("--bow-dim", type=int, default=Config.bow_dim, help="0: no word table")
    ap.add_argument("--buckets", type=int, default=Config.buckets)
    ap.add_argument("--init-std", type=float, default=Config.init_std)
    ap.add_argument("--linear", action=argparse.BooleanOptionalAction, default=Config.linear,
                    help="train the 384x384 maps D on the frozen vectors (--no-linear: "
                         "the word tables only, as the earlier grids)")
    ap.add_argument("--lr", type=float, default=Config.lr, help="AdamW: t, bias (and D)")
    ap.add_argument("--lr-bow", type=float, default=Config.lr_bow, help="SparseAdam: word table")
    ap.add_argument("--weight-decay", type=float, default=Config.weight_decay)
    ap.add_argument("--shared", action="store_true",
                    help="one word table for both towers (default: one per tower)")
    ap.add_argument("--ref-frac", type=float, default=0.1)
    ap.add_argument("--reference", choices=("calibrate", "learner"), default="calibrate")
    ap.add_argument("--ref-steps", type=int, default=400)
    ap.add_argument("--ref-batch", type=int, default=512)
    ap.add_argument("--ref-lr", type=float, default=1e-2)
    ap.add_argument("--ref-lr-bow", type=float, default=1e-2)
    ap.add_argument("--ref-eval-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--grid", choices=("pilot", "full"), default="full")
    ap.add_argument("--arms", nargs="*", help="arm@f pairs instead of --grid, e.g. random@0.8")
    ap.add_argument("--no-clean-oracle", dest="clean_oracle", action="store_false",
                    help="skip the random batches from the clean pool rows only (per f)")
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
    if args.centre is None:
        args.centre = args.frozen == "static"
    cfg = Config(args.bow_dim, args.buckets, args.init_std, args.linear, args.lr, args.lr_bow,
                 args.weight_decay, args.shared)
    ref_cfg = Config(args.bow_dim, args.buckets, args.init_std, args.linear, args.ref_lr,
                     args.ref_lr_bow, args.weight_decay, args.shared)
    pairs = load_pairs(args.work, args.buckets, args.frozen)
    # the calibrated reference is always zero-shot MiniLM (the strong model); the learner's
    # frozen part may be weaker (--frozen)
    minilm_pairs = pairs if args.frozen == "minilm" else load_pairs(args.work, args.buckets)
    split = make_split(len(pairs.q), args.noise, ref_frac=args.ref_frac)
    raw_zero_shot = frozen_zero_shot(pairs, split.test)
    if args.centre:
        pairs = centred(pairs, split.train_q, split.train_p)
    # the bar "the learner ends above zero-shot" is the learner's own frozen encoder's
    zero_shot = frozen_zero_shot(pairs, split.test)
    zero_shot["val_recall@1"] = frozen_zero_shot(pairs, split.val)["recall@1"]
    zero_shot["encoder"] = args.frozen + (" centred" if args.centre else "")
    zero_shot["uncentred_recall@1"] = raw_zero_shot["recall@1"]
    minilm_zero_shot = retrieval(minilm_pairs.q[split.test], minilm_pairs.p[split.test])
    minilm_zero_shot["val_recall@1"] = retrieval(minilm_pairs.q[split.val],
                                                 minilm_pairs.p[split.val])["recall@1"]
    ref_pairs = minilm_pairs if args.reference == "calibrate" else pairs
    cpu_ref = time.process_time()
    ref_head, ref_info = train_reference(ref_pairs, split, ref_cfg, args.ref_steps,
                                         args.ref_batch, args.reference, args.ref_eval_every)
    ref_info["cpu_s"] = time.process_time() - cpu_ref
    ref_info["test"] = evaluate(ref_head, ref_pairs, split)
    ref_info["scale_bias"] = ref_head.scale_bias
    ref_emb = ref_head.embed(ref_pairs, split.train_q, split.train_p)
    print(json.dumps({"pairs": len(pairs.q), "train": len(split.train_q),
                      "noisy": int(split.noisy.sum()), "ref": len(split.ref),
                      "val": len(split.val), "test": len(split.test), "zero_shot": zero_shot,
                      "minilm_zero_shot": minilm_zero_shot,
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
            r = run_arm(pairs, split, ref_emb, ref_head.scale_bias, arm, f, seed, args.steps,
                        args.superbatch, args.chunks, cfg, args.eval_every, clean_only=clean)
            runs.append(r)
            print(json.dumps({k: r[k] for k in ("arm", "f", "seed", "b", "final", "noisy_share",
                                                 "selection_cpu_s_per_step",
                                                 "train_cpu_s_per_step")}), flush=True)
    summary = summarise(runs, zero_shot, minilm_zero_shot)
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "data": {"pairs": len(pairs.q), "train": len(split.train_q),
                       "noisy": int(split.noisy.sum()), "ref": len(split.ref),
                       "val": len(split.val), "test": len(split.test)},
              "zero_shot": zero_shot, "minilm_zero_shot": minilm_zero_shot,
              "reference": ref_info, "summary": summary, "runs": runs,
              "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
              "load_avg": os.getloadavg(), "cpus": os.cpu_count()}
    table = markdown(summary, zero_shot, ref_info, minilm_zero_shot)
    print(table)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
