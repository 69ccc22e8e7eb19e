"""Rows per second of the `select.jest` recipe step, in this process (engine: inprocess).

    nice -n 10 .venv/bin/python benchmarks/jest_step.py --work /tmp/jest-step

Three arms:
- `select`: one selection step, `curate.select.jest.select` on random 384-d embeddings at
  B = 4096, f = 0.8, N = 16 (what benchmarks/jest_select.py times in wall seconds), here
  in CPU seconds (process time, all threads) and wall, best and median of `--rounds`;
- `text`: GSM8K's 1,319 prompt/answer pairs (the shared samples' bench.parquet) with the
  default models (learner: static MiniLM, reference: torch MiniLM), B = 256, f = 0.75,
  N = 16: embedding both columns with both models dominates;
- `vectors`: the selection alone, learner and reference given as vector columns (random
  384-d unit vectors), `--vector-rows` rows (default 40,800) at B = 4080 (b = 816, the
  largest B <= 4096 whose b is a multiple of 16), f = 0.8, N = 16.

Each arm runs `--runs` times (default 2) and checks that all runs kept the same rows.
Prints, per arm, rows, super-batches, CPU seconds of the step (`ops.seconds`: process
time, all threads), the run's wall seconds, rows per CPU second and per wall second, and
the 1-minute load average before and after (the dev box is shared; CPU seconds are the
per-core figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.recipe import parse_recipe
from pipelines.runner import run

SAMPLES = Path("/work/shared/data/samples/bench.parquet")


def text_input(work: Path) -> Path:
    folder = work / "text-in"
    folder.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(SAMPLES).select(["bench_id", "prompt", "answer", "text"])
    pq.write_table(table.rename_columns(["id", "prompt", "answer", "text"]),
                   folder / "gsm8k.parquet")
    return folder


def vector_input(work: Path, rows: int, dim: int = 384) -> Path:
    folder = work / "vectors-in"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cols = {"id": [f"r{i}" for i in range(rows)], "text": [f"row {i}" for i in range(rows)]}
    for name in ("l_left", "l_right", "r_left", "r_right"):
        x = rng.standard_normal((rows, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
    pq.write_table(pa.table(cols), folder / "vectors.parquet")
    return folder


def run_arm(folder: Path, out: Path, params: str) -> dict:
    if out.exists():
        shutil.rmtree(out)
    loaded = parse_recipe(
        f"name: jest-step\ninput: {{path: '{folder}/*.parquet'}}\n"
        f"output: {{path: '{out}'}}\nexecution: {{engine: inprocess}}\nsteps:\n"
        f"  - op: select.jest\n    params: {params}\n")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = run(loaded.run_spec(), loaded.operators)
    total = time.perf_counter() - start
    [step] = [r for r in result.ops if r["name"] == "select.jest"]
    metrics = json.loads(step["metrics"]) if isinstance(step["metrics"], str) else step["metrics"]
    kept = pq.read_table(out, columns=["id"])["id"].to_pylist()
    return {"rows": step["rows_in"], "kept": step["rows_out"],
            "super_batches": metrics["super_batches"], "cpu_s": step["seconds"],
            "run_wall_s": total, "load_before": load, "load_after": os.getloadavg()[0],
            "kept_ids": kept}


def select_step(batch: int = 4096, dim: int = 384, rounds: int = 7) -> None:
    import statistics

    from curate.select import jest

    rng = np.random.default_rng(0)
    emb = [rng.standard_normal((batch, dim)).astype(np.float32) for _ in range(4)]
    cpu, wall = [], []
    load = os.getloadavg()[0]
    for r in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        chosen = jest.select(learner=(emb[0], emb[1]), reference=(emb[2], emb[3]),
                             filter_ratio=0.8, chunks=16, seed=r)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    print(f"select: B={batch} d={dim} b={len(chosen)} cpu_s best {min(cpu):.3f} median "
          f"{statistics.median(cpu):.3f}; wall_s best {min(wall):.3f} median "
          f"{statistics.median(wall):.3f}; load={load:.1f}->{os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/jest-step"))
    ap.add_argument("--vector-rows", type=int, default=40_800)
    ap.add_argument("--arms", nargs="+", default=["select", "text", "vectors"])
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    arms = {
        "text": (lambda: text_input(args.work),
                 "{super_batch: 256, filter_ratio: 0.75, chunks: 16}"),
        "vectors": (lambda: vector_input(args.work, args.vector_rows),
                    "{super_batch: 4080, filter_ratio: 0.8, chunks: 16, "
                    "learner: {columns: [l_left, l_right]}, "
                    "reference: {columns: [r_left, r_right]}}"),
    }
    print(f"cpus={os.cpu_count()}")
    for name in args.arms:
        if name == "select":
            select_step()
            continue
        make, params = arms[name]
        folder = make()
        runs = [run_arm(folder, args.work / f"{name}-out{i}", params)
                for i in range(args.runs)]
        same = all(r["kept_ids"] == runs[0]["kept_ids"] for r in runs)
        for i, r in enumerate(runs):
            print(f"{name} run {i + 1}: rows={r['rows']} kept={r['kept']} "
                  f"super_batches={r['super_batches']} cpu_s={r['cpu_s']:.2f} "
                  f"rows_per_cpu_s={r['rows'] / r['cpu_s']:.1f} "
                  f"run_wall_s={r['run_wall_s']:.1f} "
                  f"rows_per_wall_s={r['rows'] / r['run_wall_s']:.1f} "
                  f"load={r['load_before']:.1f}->{r['load_after']:.1f}")
        print(f"{name}: {len(runs)} runs kept the same rows: {same}")


if __name__ == "__main__":
    main()
