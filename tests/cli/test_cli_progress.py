"""`curate run` reports per-step progress while it works, not only at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests.conftest import REPO, write_parquet

SHARDS, ROWS, BATCH = 4, 400, 40  # the slow step sleeps 16 s in all, on 2 CPUs
TOTAL = SHARDS * ROWS
# The CLI's entry function with the test-only `test.slow` operator (tests/toy_operators.py)
# added to the operator catalogue; everything else is the `curate` command as installed.
ENTRY = ("import sys; from operators import registry; from tests import toy_operators; "
         "registry.catalogue()['test.slow'] = toy_operators.SlowMap; "
         "from curate.cli import app; sys.argv[0] = 'curate'; app()")
LINE = re.compile(r"^step (\d+) (\S+): ([\d,]+) in, ([\d,?]+) out, ([\d,]+) docs/s, ETA (\S+)")

RECIPE = """\
name: slow
input: {{path: "{input}", text_column: text, id_column: id, batch_rows: {batch}}}
output: {{path: "{output}"}}
execution: {{address: local, engine: ray, num_cpus: 2, seed: 0}}
steps:
  - op: filter.length
    params: {{min_words: 2}}
  - op: test.slow
    params: {{seconds_per_row: 0.01}}
"""


def test_run_on_ray_prints_row_counts_before_it_ends(tmp_path):
    for s in range(SHARDS):
        write_parquet(tmp_path / "in" / f"part-{s}.parquet",
                      [{"id": f"{s}-{i}", "text": f"document {s} number {i} " + "w " * (i % 7)}
                       for i in range(ROWS)])
    recipe = tmp_path / "slow.yaml"
    recipe.write_text(RECIPE.format(input=tmp_path / "in" / "*.parquet",
                                    output=tmp_path / "out", batch=BATCH))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "run", str(recipe)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    midway, seen = [], []
    deadline = time.monotonic() + 300
    try:
        for line in proc.stderr:  # read as it arrives, while the run is still going
            seen.append(line)
            m = LINE.match(line.strip())
            if m and m.group(2) == "test.slow" and 0 < int(m.group(3).replace(",", "")) < TOTAL:
                midway.append((line.strip(), proc.poll()))
            assert time.monotonic() < deadline, "run did not finish in 300 s"
        out = proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0, "".join(seen)
    assert midway, "no intermediate progress line for the slow step:\n" + "".join(seen)
    line, exit_code = midway[0]
    assert exit_code is None, f"{line!r} came only after the process exited"
    m = LINE.match(line)
    rows_in, rows_out = (int(m.group(i).replace(",", "")) for i in (3, 4))
    assert rows_out == rows_in and int(m.group(5).replace(",", "")) > 0
    assert m.group(6) != "?"  # the input size is known from the Parquet footers: an ETA
    # The funnel at the end: every row through the slow step, and a wall time per step.
    funnel = [r for r in out.splitlines() if "test.slow" in r]
    assert funnel and f"{TOTAL:,}" in funnel[0], out
    assert "wall s" in out
