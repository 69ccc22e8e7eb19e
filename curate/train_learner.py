"""Training a two-tower head for `select.jest` (and any JEST loop): algorithms.md 1.7.

On frozen sentence-transformers embeddings of a pair set (two text columns of Parquet or
JSONL files), a head maps each side by its own linear layer and scores a pair with the
SigLIP logit t·cos + b (Zhai et al. 2023; init t = 10, i.e. log t = log 10, b = -10),
trained with AdamW on the sigmoid loss over in-batch pairs (section 1.3). The linear
layers start at the identity, so the untrained head is the base encoder itself and the
recall@1 reported "before" is the encoder's own.

Use: train it on a small clean set and give it to `select.jest` as the `reference` head
(the paper's small curated reference, "data-quality bootstrapping"), or train it on the
pool and use it as a learner checkpoint. Held out: pairs are split by a hash of their
left text, so a repeated query never straddles train and test; recall@1 is left -> right
retrieval among the held-out pairs. The checkpoint is an npz without pickle
(`operators.select.jest_encoders.save_head`).
"""

from __future__ import annotations

import glob
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from operators.select.jest_encoders import save_head


def read_pairs(pattern: str, left: str, right: str) -> tuple[list[str], list[str], int]:
    """The (left, right) texts of every Parquet/JSONL file matching `pattern` (sorted by
    path) and the number of rows skipped because one side is null or empty."""
    files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        raise FileNotFoundError(f"no files match '{pattern}'")
    lefts: list[str] = []
    rights: list[str] = []
    skipped = 0
    for f in files:
        if f.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
            import pyarrow.json as pj

            table = pj.read_json(f)
        else:
            table = pq.read_table(f)
        for col in (left, right):
            if col not in table.column_names:
                raise ValueError(f"{f}: no column '{col}' (columns: "
                                 f"{', '.join(table.column_names)})")
            if not (pa.types.is_string(table[col].type)
                    or pa.types.is_large_string(table[col].type)):
                raise ValueError(f"{f}: column '{col}' is {table[col].type}, needs strings")
        ok = pc.and_(*[pc.fill_null(pc.greater(pc.utf8_length(table[c]), 0), False)
                       for c in (left, right)])
        kept = table.filter(ok)
        skipped += table.num_rows - kept.num_rows
        lefts += kept[left].to_pylist()
        rights += kept[right].to_pylist()
    return lefts, rights, skipped


def held_out(texts: list[str], fraction: float, seed: int) -> np.ndarray:
    """True for the test rows: a seeded hash of the left text below `fraction`."""
    h = np.array([xxhash.xxh3_64_intdigest(t.encode(), seed=seed) for t in texts], np.uint64)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def recall_at_1(left: np.ndarray, right: np.ndarray) -> float:
    """Left -> right retrieval: the share of rows whose nearest right (cosine) is their own."""
    if not len(left):
        return float("nan")
    x = left / np.linalg.norm(left, axis=1, keepdims=True).clip(1e-12)
    y = right / np.linalg.norm(right, axis=1, keepdims=True).clip(1e-12)
    return float(np.mean((x @ y.T).argmax(axis=1) == np.arange(len(x))))


def train_head(left: np.ndarray, right: np.ndarray, *, dim: int | None = None, epochs: int = 10,
               batch_size: int = 256, lr: float = 1e-3, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """(left_weight, right_weight, t, b, steps): the SigLIP two-tower head fitted with AdamW
    on minibatches of pairs (each batch's other pairs are its negatives)."""
    import torch

    # One thread: the head's matmuls are small (batch x d x d); two OpenMP threads on the
    # shared dev box spun for 80x the CPU of one (14.4 vs 0.18 CPU s, 200 steps of 100 x 16).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(torch, left, right, dim, epochs, batch_size, lr, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(torch, left: np.ndarray, right: np.ndarray, dim: int | None, epochs: int,
         batch_size: int, lr: float, seed: int
         ) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    torch.manual_seed(seed)
    d_in = left.shape[1]
    d_out = dim or d_in
    # Identity start (rectangular if d_out != d_in): the untrained head is the encoder.
    w_l = torch.nn.Parameter(torch.eye(d_in, d_out))
    w_r = torch.nn.Parameter(torch.eye(d_in, d_out))
    log_t = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    b = torch.nn.Parameter(torch.tensor(-10.0))
    opt = torch.optim.AdamW([w_l, w_r, log_t, b], lr=lr)
    x_all, y_all = torch.from_numpy(left.astype(np.float32)), torch.from_numpy(
        right.astype(np.float32))
    rng = np.random.default_rng(seed)
    steps = 0
    for _ in range(epochs):
        perm = rng.permutation(len(x_all))
        for start in range(0, len(perm) - 1, batch_size):
            idx = torch.from_numpy(perm[start:start + batch_size])
            if len(idx) < 2:
                continue
            x = torch.nn.functional.normalize(x_all[idx] @ w_l, dim=1)
            y = torch.nn.functional.normalize(y_all[idx] @ w_r, dim=1)
            z = log_t.exp() * (x @ y.T) + b
            label = 2 * torch.eye(len(idx)) - 1
            # SigLIP: -1/|B| sum_ij log sigmoid(label_ij z_ij) [algorithms.md 1.3].
            loss = -torch.nn.functional.logsigmoid(label * z).sum() / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return (w_l.detach().numpy(), w_r.detach().numpy(), float(log_t.detach().exp()),
            float(b.detach()), steps)


def train_learner(pattern: str, out: str | Path, left_column: str = "prompt",
                  right_column: str = "answer", *, model: str | None = None,
                  backend: str = "torch", dim: int | None = None, epochs: int = 10,
                  batch_size: int = 256, lr: float = 1e-3, test_fraction: float = 0.1,
                  seed: int = 0, threads: int | None = None) -> dict:
    """Embed the pairs, train the head on the train split, save it to `out`; the report
    (rows, held-out recall@1 of the encoder alone and with the head, seconds)."""
    from operators.embed.backends import load_encoder

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    start = time.time()
    lefts, rights, skipped = read_pairs(pattern, left_column, right_column)
    test = held_out(lefts, test_fraction, seed)
    if test.all() or not test.any():
        raise ValueError(f"{len(lefts)} pairs leave an empty train or test split at "
                         f"test_fraction {test_fraction}; give more pairs")
    encoder = load_encoder(model, backend, threads=threads)
    x, y = encoder.encode(lefts, 64), encoder.encode(rights, 64)
    w_l, w_r, t, b, steps = train_head(x[~test], y[~test], dim=dim, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=seed)
    report = {
        "pairs": len(lefts), "skipped": skipped, "train": int((~test).sum()),
        "test": int(test.sum()),
        "recall_at_1_before": round(recall_at_1(x[test], y[test]), 4),
        "recall_at_1_after": round(recall_at_1(x[test] @ w_l, y[test] @ w_r), 4),
        "scale": round(t, 4), "bias": round(b, 4), "steps": steps, "epochs": epochs,
        "lr": lr, "batch_size": batch_size, "backend": backend, "model": model,
        "model_id": encoder.model_id, "trained_on": pattern, "seed": seed,
    }
    report["seconds"] = round(time.time() - start, 1)
    save_head(out, w_l, w_r, t, b, report)
    return report
