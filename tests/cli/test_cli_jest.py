"""The real `curate` CLI for JEST: `validate` reports select.jest's bad params and column
contract at their YAML lines, `train-learner` trains a head that `select.jest` takes, and
the same recipe run twice selects the same rows."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from tests.cli.test_cli import curate
from tests.conftest import write_parquet

TOPICS = ["cooking pasta", "fixing a bicycle", "planting tomatoes", "learning guitar",
          "painting a fence", "baking bread", "training a puppy", "repairing a roof"]


def pairs(n: int = 48) -> list[dict]:
    """Question/answer pairs on a few topics; every fourth answer belongs to another pair
    (mis-paired noise)."""
    rows = []
    for i in range(n):
        topic, other = TOPICS[i % len(TOPICS)], TOPICS[(i * 3 + 1) % len(TOPICS)]
        answer = f"Step {i % 5 + 1} of {other if i % 4 == 3 else topic}: take your time."
        rows.append({"id": f"p{i}", "text": f"How do I go about {topic}? (#{i})",
                     "prompt": f"How do I go about {topic}? (#{i})", "answer": answer})
    return rows


def _recipe(tmp_path, params: str, rows: list[dict] | None = None, name: str = "r") -> str:
    write_parquet(tmp_path / "in" / "a.parquet", rows if rows is not None else pairs())
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out-{name}'}}\n"
                      "execution: {engine: inprocess}\nsteps:\n"
                      f"  - op: select.jest\n    name: jest\n    params:\n{params}")
    return str(recipe)


def test_validate_reports_each_bad_param_at_its_line(tmp_path):
    recipe = _recipe(tmp_path, "      filter_ratio: 1.0\n      super_batch: 64\n")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert f"{recipe}:9: step 'jest' (steps[0]): filter_ratio: Input should be less than 1" \
        in res.stderr
    recipe = _recipe(tmp_path, "      super_batch: 100\n      chunks: 16\n")
    res = curate("validate", recipe)
    assert res.returncode == 2
    assert "super_batch x (1 - filter_ratio) = 20 rows cannot be cut into 16 equal chunks" \
        in res.stderr


def test_validate_needs_the_second_column(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in pairs(4)]
    recipe = _recipe(tmp_path, "      super_batch: 80\n", rows)
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert (f"{recipe}:6: step 'jest' (steps[0]): needs column 'answer' (string) which no "
            "earlier step writes and the input does not have") in res.stderr


def test_validate_refuses_a_head_of_another_size_and_the_same_model_twice(tmp_path):
    from operators.select.jest_encoders import save_head

    head = save_head(tmp_path / "h.npz", np.eye(16, dtype=np.float32),
                     np.eye(16, dtype=np.float32), 10.0, -10.0, {"backend": "torch"})
    recipe = _recipe(tmp_path, f"      reference: {{backend: torch, head: '{head}'}}\n"
                               "      learner: {backend: torch}\n")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert "reference: head" in res.stderr and "takes 16-d embeddings but" in res.stderr
    recipe = _recipe(tmp_path, "      learner: {backend: torch}\n")
    res = curate("validate", recipe)
    assert res.returncode == 2
    assert "learner and reference are the same frozen model" in res.stderr


def test_train_learner_then_select_twice_gives_the_same_rows(tmp_path):
    write_parquet(tmp_path / "clean" / "c.parquet",
                  [r for r in pairs(64) if not r["id"].endswith(("3", "7"))])
    head = tmp_path / "ref.npz"
    res = curate("train-learner", str(tmp_path / "clean" / "*.parquet"), "--out", str(head),
                 "--epochs", "3", "--batch-size", "16", "--test-fraction", "0.3")
    assert res.returncode == 0, res.stderr
    assert "held-out recall@1" in res.stdout and head.exists()
    # Zero-shot MiniLM as the learner, the trained head as the reference.
    recipe = _recipe(tmp_path, "      super_batch: 16\n      filter_ratio: 0.5\n"
                               "      chunks: 2\n      learner: {backend: torch}\n"
                               f"      reference: {{backend: torch, head: '{head}'}}\n")
    kept = []
    for _ in range(2):
        res = curate("run", recipe)
        assert res.returncode == 0, res.stderr
        kept.append(pq.read_table(tmp_path / "out-r")["id"].to_pylist())
    assert kept[0] == kept[1] and len(kept[0]) == 3 * 8
