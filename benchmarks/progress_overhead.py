"""What live progress costs a run: the same recipe with and without a progress listener.

    .venv/bin/python benchmarks/progress_overhead.py [--rows 100000] [--repeat 2]

"off": `pipelines.runner.run(progress=None)`: no tally, every batch report is a no-op
(on Ray a worker looks the tally actor up by name once every few seconds, finds none).
"on": a listener that formats every step's line (what `curate run` prints off a
terminal) at the CLI's 0.5 s interval, so workers send one actor call per batch and the
driver polls the actor twice a second.

Two runs: the quickstart recipe on its bundled input (in this process, as `execution.engine:
auto` picks for 4,000 rows), and `--rows` rows on Ray (the sample corpus,
shared/data/samples/corpus read in place, repeated with a copy number appended to ids and
texts, written once under /tmp/curate-progress-bench/). Ray is started before timing.
On and off alternate; the median wall time of each is printed, with the batch reports
one run made and what one report costs its caller (in process, and to the Ray actor):
their product bounds the overhead when the machine is too busy for wall times to tell.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.recipe import load_recipe
from pipelines.progress import RayTally, RunProgress, Tally, format_line, report, use
from pipelines.runner import run

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "samples" / "corpus"
ROOT = Path("/tmp/curate-progress-bench")


def corpus(rows: int) -> Path:
    """`rows` rows in shards of 10,000, made once."""
    folder = ROOT / str(rows)
    if folder.is_dir():
        return folder
    base = pa.concat_tables(pq.read_table(p, columns=["id", "text"])
                            for p in sorted(CORPUS.glob("*.parquet")))
    parts, copy = [], 0
    while sum(p.num_rows for p in parts) < rows:
        tag = f" #{copy}"
        parts.append(pa.table({"id": pc.binary_join_element_wise(base["id"], tag, ""),
                               "text": pc.binary_join_element_wise(base["text"], tag, "")}))
        copy += 1
    table = pa.concat_tables(parts).slice(0, rows)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, rows, 10_000)):
        pq.write_table(table.slice(start, 10_000), tmp / f"part-{k:04d}.parquet")
    tmp.rename(folder)
    return folder


LAST: list[RunProgress] = []


def listen(state: RunProgress) -> None:
    for view in state.steps:
        format_line(view)
    LAST[:] = [state]


def per_report_seconds(calls: int = 2000) -> float:
    """Wall seconds one `report` costs its caller, to whatever sink is in use here."""
    start = time.perf_counter()
    for _ in range(calls):
        report(1, "bench", 1000, 1000, 0.0, 1.0)
    return (time.perf_counter() - start) / calls


def timed(recipe: Path, sets: list[str], progress) -> float:
    with tempfile.TemporaryDirectory() as out:
        loaded = load_recipe(recipe, [f"output.path={out}/out", *sets])
        return run(loaded.run_spec(), loaded.operators, progress=progress).seconds


def compare(label: str, recipe: Path, sets: list[str], repeat: int) -> None:
    times: dict[str, list[float]] = {"off": [], "on": []}
    timed(recipe, sets, None)  # warm-up: imports, caches, Ray workers
    for _ in range(repeat):
        for mode in ("off", "on"):
            times[mode].append(timed(recipe, sets, listen if mode == "on" else None))
    off, on = (statistics.median(times[m]) for m in ("off", "on"))
    load = os.getloadavg()[0]
    batches = sum(v.batches for v in LAST[0].steps)
    print(f"{label}: off {off:.2f}s, on {on:.2f}s ({(on - off) / off:+.1%}); runs "
          f"off {[round(t, 2) for t in times['off']]} on {[round(t, 2) for t in times['on']]};"
          f" {batches:,} batch reports a run; load {load:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    quickstart = REPO / "recipes" / "quickstart.yaml"
    os.chdir(REPO)  # the quickstart's input path is relative to the repository
    compare("quickstart (in process, 4,000 rows)", quickstart, [], args.repeat)
    with use(Tally().add):
        print(f"one report to an in-process tally: {per_report_seconds() * 1e6:.1f} us")

    import ray

    from pipelines.ray_session import keep_idle_workers

    keep_idle_workers()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
    compare(f"{args.rows:,} rows on Ray ({args.num_cpus} CPUs)", quickstart,
            [f"input.path={corpus(args.rows)}/*.parquet", "execution.engine=ray"],
            args.repeat)
    RayTally()  # the tally actor, as a run makes it: reports below go to it, by name
    print(f"one report to the Ray tally actor (fire and forget): "
          f"{per_report_seconds() * 1e6:.1f} us", flush=True)


if __name__ == "__main__":
    main()
