"""JEST's selector (curate.select.jest) against hand-computed and brute-force references
(algorithms.md section 1.9)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curate.select import jest


def test_pair_losses_by_hand():
    left = np.array([[1.0, 0.0], [0.0, 1.0]])
    right = np.array([[1.0, 0.0], [1.0, 1.0]])  # normalised to (0.7071, 0.7071)
    got = jest.pair_losses(left, right, scale=2.0, bias=-1.0)
    c = 1 / math.sqrt(2)
    z = np.array([[2 * 1 - 1, 2 * c - 1], [2 * 0 - 1, 2 * c - 1]])
    label = np.array([[1, -1], [-1, 1]])
    want = np.log1p(np.exp(-label * z))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert jest.batch_loss(got) == pytest.approx(want.sum())
    assert jest.batch_loss(got, np.array([1])) == pytest.approx(want[1, 1])


def test_pair_losses_do_not_overflow():
    x = np.eye(3)
    got = jest.pair_losses(x, x, scale=1e4, bias=0.0)
    assert np.isfinite(got).all() and got[0, 1] == pytest.approx(np.log(2))


def test_conditional_logits_equal_the_brute_force_gain():
    rng = np.random.default_rng(0)
    for n in (3, 7, 12):
        s = rng.standard_normal((n, n))
        taken = rng.random(n) < 0.4
        chosen = np.flatnonzero(taken)
        logits = jest.conditional_logits(s, taken)
        for k in range(n):
            if taken[k]:
                assert logits[k] == -np.inf
                continue
            gain = jest.batch_loss(s, np.r_[chosen, k]) - jest.batch_loss(s, chosen)
            assert logits[k] == pytest.approx(gain)


def naive_sample(s: np.ndarray, f: float, chunks: int, seed: int) -> np.ndarray:
    """The sampler with the logits recomputed from scratch for every chunk."""
    rng = np.random.default_rng(seed)
    c = jest.chunk_size(len(s), f, chunks)
    taken = np.zeros(len(s), bool)
    out = []
    for _ in range(chunks):
        g = jest.conditional_logits(s, taken) + rng.gumbel(size=len(s))
        new = np.argsort(-g, kind="stable")[:c]
        out.append(new)
        taken[new] = True
    return np.concatenate(out)


def test_running_sums_draw_what_the_direct_logits_draw():
    s = np.random.default_rng(1).standard_normal((64, 64))
    for f, chunks in ((0.5, 4), (0.8, 8), (0.75, 16)):
        assert np.array_equal(jest.sample(s, f, chunks, seed=5), naive_sample(s, f, chunks, 5))


def test_no_filtering_and_one_chunk_returns_everything_once():
    s = np.random.default_rng(2).standard_normal((50, 50))
    got = jest.sample(s, filter_ratio=0.0, chunks=1, seed=0)
    assert sorted(got.tolist()) == list(range(50))


@pytest.mark.parametrize(("f", "chunks", "size"), [(0.5, 4, 64), (0.8, 16, 128), (0.9, 3, 30)])
def test_sub_batch_size_and_no_duplicates(f, chunks, size):
    s = np.random.default_rng(3).standard_normal((size, size))
    got = jest.sample(s, f, chunks, seed=1)
    assert len(got) == chunks * (int(size * (1 - f) + 1e-9) // chunks)
    assert len(set(got.tolist())) == len(got)


def test_deterministic_given_the_seed():
    s = np.random.default_rng(4).standard_normal((40, 40))
    assert np.array_equal(jest.sample(s, 0.5, 4, seed=9), jest.sample(s, 0.5, 4, seed=9))
    assert not np.array_equal(jest.sample(s, 0.5, 4, seed=9), jest.sample(s, 0.5, 4, seed=10))


def pool(n: int = 256, d: int = 64, topics: int = 16, seed: int = 0):
    """A super-batch of pairs in topics: the reference tells every pair apart; the learner
    sees mostly the topic, so pairs of one topic are hard negatives for it (large
    off-diagonal learnability within a topic), more so in some topics than others."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, topics, n)
    centre = rng.standard_normal((topics, d)) * 2
    own = rng.standard_normal((n, d))
    left, right = centre[topic] + own, centre[topic] + own + 0.3 * rng.standard_normal((n, d))
    blur = rng.uniform(0.1, 1.0, topics)[topic][:, None]  # how little the learner sees
    learner = (centre[topic] + blur * own, centre[topic] + blur * own
               + rng.standard_normal((n, d)))
    return jest.pair_losses(*learner), jest.pair_losses(left, right)


def test_chosen_batches_beat_uniform_subsets_and_improve_with_chunks():
    losses_l, losses_r = pool()
    s = jest.score_matrix(losses_l, losses_r)
    rng = np.random.default_rng(0)
    b = 64
    uniform = np.mean([jest.batch_loss(s, rng.choice(len(s), b, replace=False))
                       for _ in range(1000)])
    by_chunks = {n: np.mean([jest.batch_loss(s, jest.sample(s, 0.75, n, seed=k))
                             for k in range(20)]) for n in (1, 4, 16)}
    assert by_chunks[1] > uniform
    assert by_chunks[1] < by_chunks[4] < by_chunks[16]


def test_scores():
    losses_l, losses_r = pool(8)
    np.testing.assert_array_equal(jest.score_matrix(losses_l, losses_r), losses_l - losses_r)
    np.testing.assert_array_equal(jest.score_matrix(None, losses_r, "easy_reference"),
                                  -losses_r)
    np.testing.assert_array_equal(jest.score_matrix(losses_l, None, "hard_learner"), losses_l)
    ind = jest.score_matrix(losses_l, losses_r, "independent")
    np.testing.assert_array_equal(np.diagonal(ind), np.diagonal(losses_l - losses_r))
    assert np.count_nonzero(ind - np.diag(np.diagonal(ind))) == 0
    with pytest.raises(ValueError, match="needs the reference"):
        jest.score_matrix(losses_l, None)
    with pytest.raises(ValueError, match="unknown score"):
        jest.score_matrix(losses_l, losses_r, "top_k")


def test_select_from_embeddings_and_errors():
    rng = np.random.default_rng(6)
    q, p = rng.standard_normal((32, 8)), rng.standard_normal((32, 8))
    qr, pr = rng.standard_normal((32, 12)), rng.standard_normal((32, 12))  # other width: fine
    got = jest.select(learner=(q, p), reference=(qr, pr), filter_ratio=0.5, chunks=4, seed=0)
    assert len(got) == 16 and len(set(got.tolist())) == 16
    with pytest.raises(ValueError, match="filter_ratio must be in"):
        jest.sample(np.eye(4), 1.0, 1)
    with pytest.raises(ValueError, match="fewer than 16 chunks"):
        jest.sample(np.eye(10), 0.8, 16)
    with pytest.raises(ValueError, match="differ in shape"):
        jest.pair_losses(q, pr)
    with pytest.raises(ValueError, match="different sizes"):
        jest.select(learner=(q, p), reference=(qr[:16], pr[:16]), filter_ratio=0.5, chunks=4)


def test_chosen_batches_are_more_learnable_per_pair_as_the_filter_ratio_grows():
    """Section 1.9: mean learnability rises with f too. Per pair (s(B) / b^2), since a
    larger f keeps a smaller b; each f also beats uniform subsets of its own size."""
    losses_l, losses_r = pool()
    s = jest.score_matrix(losses_l, losses_r)
    rng = np.random.default_rng(1)
    per_pair = {}
    for f in (0.5, 0.75, 0.875):
        b = int(256 * (1 - f))
        chosen = [jest.batch_loss(s, jest.sample(s, f, 8, seed=k)) / b**2 for k in range(20)]
        uniform = [jest.batch_loss(s, rng.choice(256, b, replace=False)) / b**2
                   for _ in range(1000)]
        per_pair[f] = np.mean(chosen)
        assert per_pair[f] > np.mean(uniform)
    assert per_pair[0.5] < per_pair[0.75] < per_pair[0.875]


def test_sample_chunks_is_sample_with_the_chunk_size_given():
    s = np.random.default_rng(7).standard_normal((40, 40))
    assert np.array_equal(jest.sample_chunks(s, 4, 5, seed=3), jest.sample(s, 0.5, 4, seed=3))
    assert len(jest.sample_chunks(s, 3, 1, seed=0)) == 3
    with pytest.raises(ValueError, match="do not fit"):
        jest.sample_chunks(s, 5, 9)
