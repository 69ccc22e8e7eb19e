"""JEST inside a PyTorch training loop, with a plain in-memory loader or Ray Data as the
loader (docs/jest.md; algorithms.md section 1).

Every step draws a super-batch of B pairs, embeds it with the current learner (no grad)
and with a frozen reference, lets `curate.select.jest.select` pick b = (1 - f)·B of them,
and takes one AdamW step on the SigLIP loss of that sub-batch only.

The data are synthetic so the example runs anywhere in seconds: frozen base features of
pairs (as an `embed` step would write them), a share of them mis-paired (noise). The
learner is a two-tower linear head on the features, starting at random; the reference is
the same head trained first on a small clean set and then frozen (the paper's small
curated reference; `curate train-learner` makes one from real text). The run prints the
share of noisy pairs among the examples JEST chose (below the pool's share when the
reference steers selection, algorithms.md 1.8) and held-out recall@1.

    .venv/bin/python examples/jest_training_loop.py              # plain loader
    .venv/bin/python examples/jest_training_loop.py --ray        # Ray Data loader
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator

import numpy as np
import torch

from curate.select import jest


def synthetic_pairs(n: int, dim: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Base features of n pairs; a `noise` share of them re-paired at random."""
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((n, dim)).astype(np.float32)
    right = (left + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)
    noisy = rng.random(n) < noise
    right[noisy] = rng.standard_normal((int(noisy.sum()), dim)).astype(np.float32)
    return {"left": left, "right": right, "noisy": noisy}


class TwoTower(torch.nn.Module):
    """The learner: a linear map per side and SigLIP's t and b (init log t = log 10, b = -10)."""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.left = torch.nn.Linear(dim, dim, bias=False)
        self.right = torch.nn.Linear(dim, dim, bias=False)
        self.log_t = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        self.b = torch.nn.Parameter(torch.tensor(-10.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.nn.functional.normalize(self.left(x), dim=1),
                torch.nn.functional.normalize(self.right(y), dim=1))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        u, v = self(x, y)
        z = self.log_t.exp() * u @ v.T + self.b
        label = 2 * torch.eye(len(x)) - 1
        return -torch.nn.functional.logsigmoid(label * z).sum() / len(x)


def plain_loader(data: dict[str, np.ndarray], super_batch: int, seed: int
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Super-batches of a seeded shuffle, forever (one epoch after another)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(len(data["left"]))
        for start in range(0, len(perm) - super_batch + 1, super_batch):
            idx = perm[start:start + super_batch]
            yield {k: v[idx] for k, v in data.items()}


def ray_loader(data: dict[str, np.ndarray], super_batch: int, seed: int
               ) -> Iterator[dict[str, np.ndarray]]:
    """The same super-batches from Ray Data: a dataset of pairs (here from memory; in a
    real job `ray.data.read_parquet` of an `embed` step's output), shuffled each epoch
    and read in batches of B."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = [{"left": l_, "right": r_, "noisy": bool(n_)}
            for l_, r_, n_ in zip(data["left"], data["right"], data["noisy"], strict=True)]
    ds = ray.data.from_items(rows)
    epoch = 0
    while True:
        shuffled = ds.random_shuffle(seed=seed + epoch)
        for batch in shuffled.iter_batches(batch_size=super_batch, batch_format="numpy",
                                           drop_last=True):
            yield {"left": np.stack(batch["left"]), "right": np.stack(batch["right"]),
                   "noisy": batch["noisy"].astype(bool)}
        epoch += 1


def train_reference(dim: int, seed: int, steps: int = 150) -> TwoTower:
    """The frozen reference: a TwoTower trained on a small clean pair set (no noise)."""
    clean = synthetic_pairs(2000, dim, 0.0, seed + 2)
    ref = TwoTower(dim, seed + 2)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(2000, 256, replace=False))
        loss = ref.loss(torch.from_numpy(clean["left"])[idx], torch.from_numpy(clean["right"])[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ref.requires_grad_(False)


def recall_at_1(model: TwoTower, left: np.ndarray, right: np.ndarray) -> float:
    with torch.no_grad():
        u, v = model(torch.from_numpy(left), torch.from_numpy(right))
        return float(((u @ v.T).argmax(dim=1) == torch.arange(len(u))).float().mean())


def train(steps: int = 200, super_batch: int = 320, filter_ratio: float = 0.8,
          chunks: int = 16, dim: int = 32, pool: int = 8000, noise: float = 0.3,
          score: str = "learnability", use_ray: bool = False, seed: int = 0,
          reference_steps: int = 150) -> dict:
    """The JEST loop; returns the chosen examples' noisy share and held-out recall@1."""
    data = synthetic_pairs(pool, dim, noise, seed)
    test = synthetic_pairs(500, dim, 0.0, seed + 1)
    learner = TwoTower(dim, seed)
    reference = train_reference(dim, seed, reference_steps)
    opt = torch.optim.AdamW(learner.parameters(), lr=1e-2)
    loader = (ray_loader if use_ray else plain_loader)(data, super_batch, seed)
    chosen_noisy = []
    for step in range(steps):
        batch = next(loader)
        x, y = torch.from_numpy(batch["left"]), torch.from_numpy(batch["right"])
        with torch.no_grad():  # scoring the super-batch: no gradients
            u, v = learner(x, y)
            ur, vr = reference(x, y)  # in a real job: cached reference embeddings
            chosen = jest.select(
                learner=(u.numpy(), v.numpy()), reference=(ur.numpy(), vr.numpy()),
                filter_ratio=filter_ratio, chunks=chunks, score=score, seed=step,
                learner_scale=float(learner.log_t.exp()), learner_bias=float(learner.b),
                reference_scale=float(reference.log_t.exp()), reference_bias=float(reference.b))
        chosen_noisy.append(batch["noisy"][chosen].mean())
        idx = torch.from_numpy(chosen)
        loss = learner.loss(x[idx], y[idx])  # the learner trains on the sub-batch only
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"noisy_share_pool": float(data["noisy"].mean()),
            "noisy_share_chosen": float(np.mean(chosen_noisy)),
            "recall_at_1": recall_at_1(learner, test["left"], test["right"]),
            "last_loss": float(loss.detach())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--super-batch", type=int, default=320)
    ap.add_argument("--filter-ratio", type=float, default=0.8)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--score", default="learnability", choices=jest.SCORES)
    ap.add_argument("--ray", action="store_true", help="Ray Data as the loader")
    args = ap.parse_args()
    result = train(args.steps, args.super_batch, args.filter_ratio, args.chunks,
                   score=args.score, use_ray=args.ray)
    print(" ".join(f"{k}={v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
