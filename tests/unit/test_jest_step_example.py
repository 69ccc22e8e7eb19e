"""examples/jest_training_loop.py (the documented use of curate.select.jest in a PyTorch
loop, docs/jest.md) runs on tiny data, and its reference steers selection: learnability
picks fewer mis-paired examples than the pool holds, hard-learner more (algorithms.md 1.2,
1.8). The Ray Data loader is run in tests/integration/test_jest_ray.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jest_training_loop.py"


def load_example():
    spec = importlib.util.spec_from_file_location("jest_training_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_loop_example_runs_and_avoids_noise():
    import torch

    example = load_example()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second OpenMP thread only spins
    try:
        check(example)
    finally:
        torch.set_num_threads(threads)


def check(example) -> None:
    kw = {"steps": 12, "super_batch": 160, "chunks": 8, "pool": 2000, "dim": 16,
          "reference_steps": 40}
    learn = example.train(score="learnability", **kw)
    hard = example.train(score="hard_learner", **kw)
    assert 0.25 < learn["noisy_share_pool"] < 0.35
    assert learn["noisy_share_chosen"] < learn["noisy_share_pool"] - 0.05
    assert hard["noisy_share_chosen"] > hard["noisy_share_pool"] + 0.05
    assert learn["recall_at_1"] > hard["recall_at_1"]
