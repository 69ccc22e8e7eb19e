"""SIGKILL a run's driver after a checkpoint, rerun the same command: it resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from curate.recipe import load_recipe
from curate.stats import query
from pipelines.runner import run
from tests.cli.test_cli import CURATE, curate
from tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.ray

RECIPE = """\
name: resume
input: {{path: '{input}'}}
output: {{path: '{out}', rows_per_shard: 1000}}
execution: {{num_cpus: 2, engine: ray}}
steps:
  - op: text.normalize
  - op: dedup.exact
  - op: dedup.minhash
    params: {{threshold: 0.8}}
"""


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
def test_killed_driver_resumes_to_identical_output(ray_session, tmp_path):
    corpus = f"{SAMPLES}/corpus/*.parquet"
    reference = tmp_path / "reference.yaml"
    reference.write_text(RECIPE.format(input=corpus, out=tmp_path / "ref"))
    loaded = load_recipe(reference)
    run(loaded.recipe.run_spec("reference"), loaded.operators)

    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(input=corpus, out=out))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen([CURATE, "run", str(recipe)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    checkpoint = None
    deadline = time.time() + 240
    while checkpoint is None and driver.poll() is None and time.time() < deadline:
        found = list(out.glob("_curate/runs/*/checkpoints/step-002"))
        checkpoint = found[0] if found else None
        time.sleep(0.05)
    # The driver and the Ray it started share a process group: kill them all at once.
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert checkpoint is not None, "the run ended before its step-2 checkpoint was written"
    assert not list(out.glob("part-*.parquet")), "a killed run must not publish output"

    resumed = curate("run", str(recipe))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming unfinished run {checkpoint.parent.parent.name}" in resumed.stderr
    assert "completed steps skipped: text.normalize, dedup.exact" in resumed.stderr

    ref_files = sorted((tmp_path / "ref").glob("part-*.parquet"))
    got_files = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in ref_files] == [p.name for p in got_files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ref_files, got_files, strict=True))
    runs = query(out, "SELECT status, resumed_from_step, rows_in FROM runs").to_pylist()
    assert runs == [{"status": "succeeded", "resumed_from_step": 2, "rows_in": 11856}]
    assert not list(out.glob("_curate/runs/*/checkpoints/step-*"))  # cleaned after success
