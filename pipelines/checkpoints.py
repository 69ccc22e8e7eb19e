"""Step checkpoints, so a crashed or killed run continues instead of starting over.

After each global operator but a final one, the rows (with their bookkeeping columns) are written to
`RUN_DIR/checkpoints/step-NNN/` (written under a temporary name, then renamed, so a
checkpoint either exists whole or not at all), with the step's driver-side figures in
`meta.json`. A later run of the same recipe on the same input files (same
fingerprint) into the same OUT, finding an unfinished run, reuses its directory and
starts from its newest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import layout
from pipelines.shards import Shard


def fingerprint(recipe_yaml: str, shards: list[Shard]) -> str:
    """Identity of a run's work: the resolved recipe and each input file's size and mtime."""
    h = hashlib.sha256(recipe_yaml.encode())
    for s in shards:
        st = os.stat(s.path)
        h.update(f"\n{s.path}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class Resume:
    run_dir: Path
    step: int = 0  # last step whose output is checkpointed; 0 = start from the input
    driver_seconds: dict[int, float] = field(default_factory=dict)
    metrics: dict[int, dict] = field(default_factory=dict)


def step_dir(run_dir: Path, step: int) -> Path:
    return layout.checkpoints_dir(run_dir) / f"step-{step:03d}"


def find_unfinished(runs_root: Path, print_: str) -> Resume | None:
    """The newest run with this fingerprint that did not succeed, if any."""
    if not runs_root.is_dir():
        return None
    for run_dir in sorted(runs_root.iterdir(), reverse=True):
        marker = layout.fingerprint_file(run_dir)
        if not marker.is_file() or marker.read_text().strip() != print_:
            continue
        if _succeeded(run_dir):
            return None  # the newest matching run finished: a rerun starts afresh
        resume = Resume(run_dir)
        done = sorted(layout.checkpoints_dir(run_dir).glob("step-[0-9][0-9][0-9]"))
        if done:
            meta = json.loads((done[-1] / "meta.json").read_text())
            resume.step = int(done[-1].name.split("-")[1])
            resume.driver_seconds = {int(k): v for k, v in meta["driver_seconds"].items()}
            resume.metrics = {int(k): v for k, v in meta["metrics"].items()}
        return resume
    return None


def _succeeded(run_dir: Path) -> bool:
    import pyarrow.parquet as pq

    path = layout.runs_file(run_dir)
    return path.is_file() and pq.read_table(path, columns=["status"])["status"][0].as_py() == (
        "succeeded")


def save(ds, run_dir: Path, step: int, driver_seconds: dict, metrics: dict):
    """Write `ds` as step `step`'s checkpoint and return a dataset reading it back."""

    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.write_parquet(str(tmp))
    (tmp / "meta.json").write_text(json.dumps({"driver_seconds": driver_seconds,
                                               "metrics": metrics}))
    os.replace(tmp, final)
    return load(final)


def load(path: Path):
    import ray.data

    return ray.data.read_parquet(str(path), file_extensions=["parquet"])
