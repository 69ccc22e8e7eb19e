"""Rows/s of a recipe through Ray, against its operators called directly on the same batches.

    .venv/bin/python benchmarks/quickstart_overhead.py [RECIPE] [--input GLOB] [--repeat 3]

"direct" reads the same shards into the same batches and calls each operator's
functions in this process (`pipelines.inprocess`, global stages on all rows at once):
the cost of the maths alone. "ray" is the full run: embedded Ray, Ray Data plan, sorts, writing
shards and stats. Ray is started once before timing; its start-up is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from curate.recipe import load_recipe
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover


def direct(loaded) -> tuple[float, float, int]:
    """(seconds reading, seconds in operators, rows) without Ray."""
    inp = loaded.recipe.input
    t0 = time.perf_counter()
    shards = discover(inp.path, inp.format, inp.text_column, inp.id_column)
    batches = [b for s in shards for b in read_shard(s, inp.text_column, inp.id_column,
                                                       inp.max_doc_bytes, inp.batch_rows)]
    t1 = time.perf_counter()
    run_operators(batches, loaded.operators)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sum(s.rows for s in shards)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default="recipes/quickstart.yaml")
    ap.add_argument("--input", help="override input.path")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sets = [f"input.path={args.input}"] if args.input else []
    loaded = load_recipe(args.recipe, sets)

    read_s, ops_s, rows = min((direct(loaded) for _ in range(args.repeat)),
                              key=lambda t: t[0] + t[1])
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipelines.runner import run

    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, object_store_memory=1 << 30, include_dashboard=False,
             log_to_driver=False)
    init_s = time.perf_counter() - t
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat + 1):
            loaded.recipe.output.path = f"{tmp}/out{i}"
            t = time.perf_counter()
            run(loaded.recipe.run_spec("benchmark"), loaded.operators)
            walls.append(time.perf_counter() - t)
    ray.shutdown()
    first, warm = walls[0], statistics.median(walls[1:])
    print(f"recipe {args.recipe}, input {loaded.recipe.input.path}: {rows:,} rows, "
          f"{os.cpu_count()} cores")
    print(f"direct (no Ray): read {read_s:.2f}s + operators {ops_s:.2f}s "
          f"= {rows / (read_s + ops_s):,.0f} rows/s")
    print(f"ray   : warm run {warm:.2f}s = {rows / warm:,.0f} rows/s (median of {args.repeat}); "
          f"first run in a fresh Ray {first:.2f}s; ray.init {init_s:.2f}s")
    print(f"overhead: warm Ray run takes {warm / (read_s + ops_s):.1f}x the direct calls "
          f"(+{warm - read_s - ops_s:.2f}s)")


if __name__ == "__main__":
    main()
