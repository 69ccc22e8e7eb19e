"""`curate report` on a 1M-row run: generation time and file size.

Makes a cheap 1M-row run on the Ray engine (short generated documents; text.normalize,
filter.length, dedup.exact: numeric signals on every row, drops at two steps with three
reasons, ~90k duplicate clusters; token counting off, as it costs more than the steps), or
reuses an output folder given with --out, then
times the real `curate report` command and records the HTML's size and the command's
peak memory. The report reads only the stats Parquet (DuckDB aggregates) and a few
published rows, so neither the corpus nor the signals are loaded into Python.

    .venv/bin/python benchmarks/report_scale.py                 # generate + run + report
    .venv/bin/python benchmarks/report_scale.py --out OUT       # report an existing run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CURATE = str(Path(sys.executable).parent / "curate")
RECIPE = """\
name: report-scale
input: {{path: "{input}/*.parquet", text_column: text, id_column: id}}
output: {{path: "{out}", rows_per_shard: 200000}}
execution: {{engine: ray, num_cpus: {cpus}, seed: 0, tokenizer: none}}
steps:
  - op: text.normalize
  - op: filter.length
    params: {{min_words: 8, max_words: 38}}
  - op: dedup.exact
"""


def generate(folder: Path, rows: int, shards: int, seed: int = 0) -> None:
    """`rows` short documents of 3-40 words from a 2,000-word vocabulary (stop words
    included), a tenth of them exact copies of earlier ones."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["the", "to", "of", "and", "with", "that", "be", "have"]
                     + [f"w{i}ord" for i in range(1992)])
    lengths = rng.integers(3, 41, rows)
    words = vocab[rng.zipf(1.3, lengths.sum()) % len(vocab)]
    texts = np.array([" ".join(chunk) for chunk in np.split(words, np.cumsum(lengths)[:-1])],
                     dtype=object)
    copies = rng.random(rows) < 0.1
    texts[copies] = texts[rng.integers(0, rows, copies.sum())]
    folder.mkdir(parents=True, exist_ok=True)
    for s, part in enumerate(np.array_split(np.arange(rows), shards)):
        pq.write_table(pa.table({"id": [f"doc-{i}" for i in part], "text": texts[part]}),
                       folder / f"part-{s:05d}.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-report-scale"))
    ap.add_argument("--out", type=Path, help="report this existing output folder instead")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="report runs to time")
    args = ap.parse_args()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    out = args.out
    if out is None:
        out = args.work / "out"
        if not (out / "_curate").is_dir():
            t = time.perf_counter()
            generate(args.work / "in", args.rows, args.shards)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s")
            recipe = args.work / "recipe.yaml"
            recipe.write_text(RECIPE.format(input=args.work / "in", out=out,
                                            cpus=args.num_cpus))
            t = time.perf_counter()
            subprocess.run([CURATE, "run", str(recipe)], check=True, env=env)
            print(f"curate run: {time.perf_counter() - t:.1f} s")
    stats = sum(p.stat().st_size for p in (out / "_curate" / "runs").rglob("*.parquet")
                if "staging" not in p.parts and "checkpoints" not in p.parts)
    target = args.work / "report.html"
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        t = time.perf_counter()
        child = subprocess.Popen([CURATE, "report", str(out), "--to", str(target),
                                  "--overwrite"], env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory and CPU
        took = time.perf_counter() - t
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise SystemExit(f"curate report failed ({child.returncode})")
        print(f"report {i + 1}: {took:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s "
              f"CPU, {target.stat().st_size / 1000:,.0f} kB, peak RSS "
              f"{usage.ru_maxrss / 1024:,.0f} MB, load {load:.1f}; stats Parquet: "
              f"{stats / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
