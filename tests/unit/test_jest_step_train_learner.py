"""curate.train_learner without a model: the head learns a pairing the raw embeddings miss,
the split is a seeded function of the left text, and bad pair files are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from curate.train_learner import held_out, read_pairs, recall_at_1, train_head
from tests.conftest import write_parquet


def test_the_head_learns_a_rotation_the_raw_embeddings_miss():
    rng = np.random.default_rng(0)
    left = rng.standard_normal((600, 16)).astype(np.float32)
    rotation = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    right = (left @ rotation + 0.1 * rng.standard_normal((600, 16))).astype(np.float32)
    w_l, w_r, t, b, steps = train_head(left[:500], right[:500], epochs=40, batch_size=100,
                                      lr=1e-2)
    before = recall_at_1(left[500:], right[500:])
    after = recall_at_1(left[500:] @ w_l, right[500:] @ w_r)
    assert steps == 40 * 5 and before < 0.2 and after > 0.9
    assert t > 10.0  # the scale grows as pairs separate (init 10)


def test_identity_start_leaves_the_encoder_unchanged():
    x = np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32)
    w_l, w_r, t, b, steps = train_head(x, x, epochs=1, batch_size=64, lr=0.0)
    np.testing.assert_array_equal(w_l, np.eye(8, dtype=np.float32))
    assert (t, b, steps) == (pytest.approx(10.0), -10.0, 1)


def test_split_is_seeded_by_the_left_text():
    texts = [f"q{i}" for i in range(2000)]
    a, again, other = held_out(texts, 0.1, 0), held_out(texts, 0.1, 0), held_out(texts, 0.1, 1)
    assert np.array_equal(a, again) and not np.array_equal(a, other)
    assert 0.07 < a.mean() < 0.13
    assert held_out(["same", "same"], 0.5, 3).tolist() in ([True, True], [False, False])


def test_pair_files_are_checked(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"prompt": "q", "answer": "a"},
                                           {"prompt": None, "answer": "b"},
                                           {"prompt": "r", "answer": ""}])
    lefts, rights, skipped = read_pairs(str(tmp_path / "*.parquet"), "prompt", "answer")
    assert (lefts, rights, skipped) == (["q"], ["a"], 2)
    with pytest.raises(ValueError, match=r"a\.parquet: no column 'body'"):
        read_pairs(str(tmp_path / "*.parquet"), "prompt", "body")
    with pytest.raises(FileNotFoundError, match="no files match"):
        read_pairs(str(tmp_path / "none*.parquet"), "prompt", "answer")
