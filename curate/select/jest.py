"""JEST's batch selector (Evans, Parthasarathy, Merzic, Hénaff 2024, arXiv 2406.17711;
algorithms.md section 1), for any training loop: numpy in and out, no Ray, no curate run
(torch computes the B x B pair losses: its softplus is several times numpy's logaddexp).

Given a super-batch of B paired examples (left/right embeddings, e.g. query/passage) as
seen by the learner and by a frozen reference model, `select` returns the indices of a
sub-batch of b = N·floor(B·(1 - f)/N) examples that is jointly learnable:

    from curate.select import jest
    chosen = jest.select(learner=(q_l, p_l), reference=(q_r, p_r), filter_ratio=0.8,
                         chunks=16, seed=step)

`pair_losses` is the SigLIP sigmoid pair loss (section 1.3), `score_matrix` the scoring
criteria (section 1.2) and `sample` the blocked sequential sampler (section 1.4), which
callers holding their own loss matrices can use directly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Score = Literal["learnability", "easy_reference", "hard_learner", "independent"]
SCORES: tuple[str, ...] = ("learnability", "easy_reference", "hard_learner", "independent")
# SigLIP's initialisation (Zhai et al. 2023): t = exp(log 10), bias -10.
SIGLIP_SCALE, SIGLIP_BIAS = 10.0, -10.0


def pair_losses(left: np.ndarray, right: np.ndarray, scale: float = SIGLIP_SCALE,
                bias: float = SIGLIP_BIAS) -> np.ndarray:
    """(B, B) SigLIP pair losses [section 1.3]: l_ij = log(1 + exp(-label_ij · z_ij)),
    z_ij = scale·<x_i, y_j> + bias, label +1 on the diagonal (the true pairs), -1 off it.

    Rows are L2-normalised here, so callers may pass raw embeddings.
    """
    import torch

    x, y = _unit(left), _unit(right)
    if x.shape != y.shape:
        raise ValueError(f"left and right embeddings differ in shape: {x.shape} vs {y.shape}")
    with torch.no_grad():
        z = torch.from_numpy(x) @ torch.from_numpy(y).T
        z.mul_(scale).add_(bias)
        # -label·z: +z off the diagonal, -z on it; softplus is log(1 + e^a), overflow-safe.
        z.diagonal().neg_()
        return torch.nn.functional.softplus(z).numpy()


def batch_loss(losses: np.ndarray, chosen: np.ndarray | None = None) -> float:
    """The batch loss [section 1.3]: the sum of pair losses over chosen x chosen (all B when
    `chosen` is None). SigLIP divides by |B|; a constant factor changes no selection."""
    m = losses if chosen is None else losses[np.ix_(chosen, chosen)]
    return float(m.sum(dtype=np.float64))


def score_matrix(learner: np.ndarray | None, reference: np.ndarray | None,
                 score: Score = "learnability") -> np.ndarray:
    """S for the sampler, from the learner's and the reference's (B, B) pair losses
    [section 1.2]: learnability L - R (RHO-LOSS at batch level, the default),
    easy_reference -R, hard_learner L; `independent` keeps only the diagonal of L - R,
    so each example is scored on its own (the baseline that joint selection must beat).
    """
    need = {"learnability": (True, True), "independent": (True, True),
            "easy_reference": (False, True), "hard_learner": (True, False)}
    if score not in need:
        raise ValueError(f"unknown score {score!r}; one of {', '.join(SCORES)}")
    want_l, want_r = need[score]
    if (want_l and learner is None) or (want_r and reference is None):
        raise ValueError(f"score {score!r} needs the "
                         f"{'learner' if want_l and learner is None else 'reference'} losses")
    if score == "easy_reference":
        return -reference
    if score == "hard_learner":
        return learner
    s = learner - reference
    return np.diag(np.diagonal(s)) if score == "independent" else s


def chunk_size(batch: int, filter_ratio: float, chunks: int) -> int:
    """c = floor(B·(1 - f)/N) [section 1.4 step 1]; the sub-batch is N·c examples."""
    if not 0 <= filter_ratio < 1:
        raise ValueError(f"filter_ratio must be in [0, 1), got {filter_ratio}")
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    # round() first: (1 - 0.8)·B is not exact in binary and would floor one short.
    c = int(np.floor(round(batch * (1 - filter_ratio), 6) / chunks))
    if c < 1:
        raise ValueError(f"a super-batch of {batch} with filter_ratio {filter_ratio} keeps "
                         f"{batch * (1 - filter_ratio):g} examples, fewer than {chunks} chunks "
                         "of at least one: use a larger batch, fewer chunks or a lower ratio")
    return c


def conditional_logits(scores: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """logits_k = S_kk + sum_{j in A} (S_jk + S_kj), -inf for k in A (boolean mask `taken`):
    the direct form of what `sample` keeps as running sums."""
    s = np.asarray(scores, np.float64)
    logits = np.diagonal(s) + s[taken].sum(axis=0) + s[:, taken].sum(axis=1)
    return np.where(taken, -np.inf, logits)


def sample(scores: np.ndarray, filter_ratio: float = 0.8, chunks: int = 16,
           seed: int | np.random.Generator = 0) -> np.ndarray:
    """Blocked sequential sampling [section 1.4]: the chosen indices, in the order drawn.

    Chunk 1 is drawn from the self terms d_k = S_kk; each later chunk from
    logits_k = d_k + sum_{j in A} (S_jk + S_kj) over everything chosen so far (A), which
    is s(A ∪ {k}) - s(A). Each chunk is c draws without replacement with probability
    ∝ exp(logits) (Gumbel-top-c: sampling, not top-k), chosen rows masked out. The two
    sums are kept as running vectors, updated with the new chunk's rows and columns,
    so the whole draw costs O(B·b), not O(N·B²).
    """
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"scores must be a square (B, B) matrix, got shape {s.shape}")
    return sample_chunks(s, chunks, chunk_size(s.shape[0], filter_ratio, chunks), seed)


def sample_chunks(scores: np.ndarray, chunks: int, size: int,
                  seed: int | np.random.Generator = 0) -> np.ndarray:
    """`sample` with the chunk size given: `chunks` chunks of `size` draws each (for a
    super-batch whose sub-batch is not set by a filter ratio, e.g. a partial last one)."""
    s = np.asarray(scores)
    n, c = s.shape[0], size
    if not 1 <= c * chunks <= n:
        raise ValueError(f"{chunks} chunks of {c} do not fit in a super-batch of {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    self_terms = np.diagonal(s).astype(np.float64)
    running = np.zeros(n, np.float64)  # sum over chosen j of S_jk + S_kj
    taken = np.zeros(n, bool)
    order: list[np.ndarray] = []
    for _ in range(chunks):
        logits = np.where(taken, -np.inf, self_terms + running)
        gumbel = logits + rng.gumbel(size=n)
        new = np.argpartition(-gumbel, c - 1)[:c]
        new = new[np.argsort(-gumbel[new], kind="stable")]
        order.append(new)
        taken[new] = True
        running += s[new].sum(axis=0, dtype=np.float64) + s[:, new].sum(axis=1,
                                                                          dtype=np.float64)
    return np.concatenate(order)


def select(learner: tuple[np.ndarray, np.ndarray] | None = None,
           reference: tuple[np.ndarray, np.ndarray] | None = None, *,
           filter_ratio: float = 0.8, chunks: int = 16, score: Score = "learnability",
           seed: int | np.random.Generator = 0,
           learner_scale: float = SIGLIP_SCALE, learner_bias: float = SIGLIP_BIAS,
           reference_scale: float = SIGLIP_SCALE, reference_bias: float = SIGLIP_BIAS
           ) -> np.ndarray:
    """The sub-batch of one super-batch: pair losses of each model's (left, right)
    embeddings under its own SigLIP scale and bias, `score_matrix`, then `sample`."""
    losses_l = pair_losses(*learner, learner_scale, learner_bias) if learner else None
    losses_r = pair_losses(*reference, reference_scale, reference_bias) if reference else None
    sizes = {m.shape[0] for m in (losses_l, losses_r) if m is not None}
    if len(sizes) > 1:
        raise ValueError(f"learner and reference see super-batches of different sizes: {sizes}")
    return sample(score_matrix(losses_l, losses_r, score), filter_ratio, chunks, seed)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a (B, d) matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
