"""`curate run` through the real entry point: user files are never destroyed, errors are
one line, Ctrl-C says how to resume (issue 10, items 1, 7 and 9)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from tests.cli.test_cli import CURATE, curate
from tests.conftest import REPO, SAMPLES, write_parquet

QUICKSTART = sorted((REPO / "data" / "quickstart").glob("*.parquet"))


def _listing(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    for shard in QUICKSTART:
        shutil.copy(shard, folder)
    before = _listing(folder)
    res = curate("run", "recipes/quickstart.yaml", "--input", f"{folder}/*.parquet",
                 "--output", str(folder))
    assert res.returncode == 1
    assert "contains input shards" in res.stderr and "Traceback" not in res.stderr
    assert _listing(folder) == before  # not even a _curate folder was created
    checked = curate("validate", "recipes/quickstart.yaml", "--input", f"{folder}/*.parquet",
                     "--output", str(folder))
    assert checked.returncode == 2 and "contains input shards" in checked.stderr


def test_foreign_files_in_the_output_folder_are_refused_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-important.parquet").write_bytes(b"the user's own file")
    (out / "README.txt").write_text("notes")
    before = _listing(out)
    res = curate("run", "recipes/quickstart.yaml", "--output", str(out))
    assert res.returncode == 1
    assert "holds files curate did not write (README.txt, part-important.parquet)" in res.stderr
    assert _listing(out) == before


def test_output_inside_a_recursive_input_glob_is_refused(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    shutil.copy(QUICKSTART[0], root / "a")
    res = curate("run", "recipes/quickstart.yaml", "--input", f"{root}/**/*.parquet",
                 "--output", str(root / "out"))
    assert res.returncode == 1 and "would also match files curate writes" in res.stderr
    assert not (root / "out").exists()


def test_no_matching_input_creates_nothing(tmp_path):
    res = curate("run", "recipes/quickstart.yaml", "--input", f"{tmp_path}/none/*.jsonl",
                 "--output", str(tmp_path / "out"))
    assert res.returncode == 1 and "matches no files" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_rerun_into_curates_own_output_replaces_only_its_files(tmp_path):
    rows = [{"id": f"r{i}", "text": f"document number {i} with enough words"} for i in range(5)]
    write_parquet(tmp_path / "in" / "a.parquet", rows)
    out = tmp_path / "out"
    args = ("run", "recipes/quickstart.yaml", "--input", f"{tmp_path}/in/*.parquet",
            "--output", str(out), "--set", "steps.not-too-short.params.min_words=2",
            "--set", "execution.num_cpus=1")
    first = curate(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Progress bars disabled" not in first.stderr
    assert "will hang unless more CPUs" not in first.stderr
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000-0000.parquet"]
    second = curate(*args, "--set", "output.rows_per_shard=2")
    assert second.returncode == 0, second.stderr[-2000:]
    names = sorted(p.name for p in out.glob("part-*"))
    assert names == [f"part-00000-000{k}.parquet" for k in range(3)]
    assert sum(pq.read_table(out / n).num_rows for n in names) == 5


@pytest.mark.ray
def test_corrupt_shard_is_one_plain_line_naming_the_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = bytearray(QUICKSTART[0].read_bytes())
    start = len(data) // 3  # a data page; the footer stays intact, so discovery passes
    data[start:start + 2000] = b"U" * 2000
    (folder / "broken.parquet").write_bytes(bytes(data))
    out = tmp_path / "out"
    res = curate("run", "recipes/quickstart.yaml", "--input", f"{folder}/*.parquet",
                 "--output", str(out), "--set", "execution.num_cpus=1")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.parquet" in errors[0], res.stderr[-3000:]
    assert "\x1b[" not in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) < 10, res.stderr
    runs = pq.read_table(next(out.glob("_curate/runs/*/runs.parquet"))).to_pylist()
    assert runs[0]["status"] == "failed"
    assert "broken.parquet" in runs[0]["error"] and "\n" not in runs[0]["error"]
    assert "\x1b[" not in runs[0]["error"]
    assert "Traceback" in next(out.glob("_curate/runs/*/error.log")).read_text()


@pytest.mark.ray
def test_empty_input_is_warned_about(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", [], schema=pq.read_schema(QUICKSTART[0]))
    res = curate("run", "recipes/quickstart.yaml", "--input", f"{tmp_path}/in/*.parquet",
                 "--output", str(tmp_path / "out"), "--set", "execution.num_cpus=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "hold no rows; the output will be empty" in res.stderr


@pytest.mark.ray
@pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
def test_ctrl_c_says_how_to_resume_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: interrupted\ninput: {{path: '{SAMPLES}/corpus/*.parquet'}}\n"
                      f"output: {{path: '{out}'}}\nexecution: {{num_cpus: 2, engine: ray}}\n"
                      "steps:\n  - op: text.normalize\n  - op: dedup.minhash\n"
                      # 1024 permutations: enough work that the run is still going when
                      # the interrupt comes, however fast the machine
                      "    params: {num_perm: 1024}\n")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    # A shell that started this test in the background left SIGINT ignored, which the
    # child would inherit: give it the default a terminal's Ctrl-C meets.
    driver = subprocess.Popen([CURATE, "run", str(recipe)], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list(out.glob("_curate/runs/*/fingerprint")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # inside Ray work, as a user's Ctrl-C would be
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted; rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert not list(out.glob("part-*.parquet"))
    resumed = curate("run", str(recipe))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming unfinished run" in resumed.stderr
