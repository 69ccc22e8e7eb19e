"""Fingerprint what every recipe in recipes/ writes, to show a change left outputs alone.

    .venv/bin/python benchmarks/recipe_outputs.py --out /tmp/fp-after.json [--set K=V ...]
    .venv/bin/python benchmarks/recipe_outputs.py --compare /tmp/fp-before.json /tmp/fp-after.json

Each recipe runs through the real `curate run` into a fresh folder; the fingerprint is
the SHA-256 of every published shard, and of each run's dropped and signals files (run
ids removed from the names, and from the `run_id` column by re-reading: the bytes of
those files embed the run id). `--set` is passed to every run (e.g.
`execution.engine=ray`). For the code before a change, run this script with
`PYTHONPATH=<old checkout>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).parent / "curate")


def _records_digest(path: Path) -> str:
    table = pq.read_table(path)
    if "run_id" in table.column_names:
        table = table.drop_columns(["run_id"])
    return hashlib.sha256(repr(table.to_pydict()).encode()).hexdigest()[:16]


def fingerprint(out: Path) -> dict[str, str]:
    prints = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
              for p in sorted(out.glob("part-*.parquet"))}
    for kind in ("dropped", "signals"):
        for p in sorted(out.glob(f"_curate/runs/*/{kind}/*.parquet")):
            prints[f"{kind}/{p.name}"] = _records_digest(p)
    return prints


def run_all(sets: list[str]) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    result = {}
    with tempfile.TemporaryDirectory(prefix="recipe-outputs-") as tmp:
        for recipe in sorted((REPO / "recipes").glob("*.yaml")):
            out = Path(tmp) / recipe.stem
            start = time.perf_counter()
            res = subprocess.run([CURATE, "run", str(recipe), "--output", str(out),
                                  *[a for s in sets for a in ("--set", s)]],
                                 cwd=REPO, env=env, capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{recipe.name} failed:\n{res.stderr[-3000:]}")
            result[recipe.stem] = {"seconds": round(time.perf_counter() - start, 1),
                                   "files": fingerprint(out)}
            print(f"{recipe.stem}: {len(result[recipe.stem]['files'])} files, "
                  f"{result[recipe.stem]['seconds']} s", flush=True)
    return result


def compare(a_path: str, b_path: str) -> int:
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    bad = 0
    for name in sorted(set(a) | set(b)):
        fa, fb = a.get(name, {}).get("files"), b.get(name, {}).get("files")
        same = fa == fb
        bad += not same
        print(f"{name:14} {'identical' if same else 'DIFFERENT'} "
              f"({len(fa or {})} vs {len(fb or {})} files; "
              f"{a.get(name, {}).get('seconds')} s vs {b.get(name, {}).get('seconds')} s)")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints here (JSON)")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    prints = run_all(args.sets)
    if args.out:
        Path(args.out).write_text(json.dumps(prints, indent=1))


if __name__ == "__main__":
    main()
