"""Shared fixtures: one embedded Ray per test session, and small shard builders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "samples"


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once (2 CPUs, small object store) and always shut it down."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipelines.ray_session import keep_idle_workers

    keep_idle_workers()

    ray.init(address="local", num_cpus=2, object_store_memory=512 * 1024 * 1024,
             include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_jsonl(path: Path, lines: list[bytes | str | dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            f.write(line if isinstance(line, bytes) else line.encode())
            f.write(b"\n")
    return path


def recipe_text(input_glob: str, out: str, steps: str = "", extra: str = "") -> str:
    return (f"name: test\ninput: {{path: '{input_glob}'{extra}}}\n"
            f"output: {{path: '{out}', rows_per_shard: 3}}\n"
            f"steps:\n{steps or '  []'}\n")


def run_outputs(out: Path) -> dict:
    """What a run into `out` produced, comparable across runs: the published shards as
    bytes, and each run's dropped, removed and signals rows without their run id."""
    files: dict = {p.name: p.read_bytes() for p in sorted(out.glob("part-*.parquet"))}
    for kind in ("dropped", "removed", "signals"):
        for p in sorted(out.glob(f"_curate/runs/*/{kind}/*.parquet")):
            files[f"{kind}/{p.name}"] = pq.read_table(p).drop_columns(["run_id"]).to_pydict()
    return files


def write_quality_split(root: Path) -> Path:
    """The sample quality set as pos.parquet (ham), neg.parquet (spam) and all.parquet."""
    import pyarrow.compute as pc

    table = pq.read_table(SAMPLES / "quality.parquet")
    pq.write_table(table.filter(pc.equal(table["label"], "ham")), root / "pos.parquet")
    pq.write_table(table.filter(pc.equal(table["label"], "spam")), root / "neg.parquet")
    pq.write_table(table.select(["id", "text", "label"]), root / "all.parquet")
    return root


def vector_array(x: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) floats as the fixed_size_list<float32>[d] column `embed` writes."""
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])


def write_vectors(path: Path, x: np.ndarray | pa.Array, text: str = "text {i}") -> str:
    """A Parquet input of ids r0.., texts `text.format(i=i)` and an `embedding` column
    (vectors as a numpy matrix, or any Arrow array for bad-input cases)."""
    vectors = vector_array(x) if isinstance(x, np.ndarray) else x
    n = len(vectors)
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(n)],
                             "text": [text.format(i=i) for i in range(n)],
                             "embedding": vectors}), path)
    return str(path)
