"""Driver for the `decontaminate` peer (PyPI bindings of allenai/decon), run in its own venv.

    /tmp/decon312/bin/python benchmarks/contamination_decon.py --corpus 'DEV/corpus/*.parquet'
        --bench DEV/index/gsm8k.parquet [--bench ...] --out DIR

`decontaminate` needs Python >= 3.12, so this file imports only the standard library,
pyarrow and `decon` (no curate code). It converts our data into decon's input formats:
- training data: one JSONL file per corpus shard, `{"text": ...}` per document
  (decon's default `content_key: text`); decon's report names the training file and line;
- eval references: one JSONL file per benchmark file, one record per item in decon's
  normalised format (doc/eval-datasets.md of allenai/decon): `eval_key` = our benchmark
  column, `eval_instance_index` = row, `split` = "test", `question` = our `prompt`,
  `answer` = our `answer`, `doc_id` = a running integer, `fingerprint` = first 16 hex digits
  of SHA-256 of question + answer; no passage.
Everything else is `decon.Config`'s default (written to DIR/timing.json as `settings`).
Output: DIR/flags.parquet (id, benchmark, matched_id, score = contamination_score; the
highest-scoring match of each document) and DIR/timing.json (CPU seconds of `decon.detect`
from getrusage of this process, which holds decon's worker threads; conversion CPU apart;
peak RSS; RSS before detect).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import resource
import shutil
import time
from pathlib import Path

import decon
import pyarrow as pa
import pyarrow.parquet as pq


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--bench", action="append", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    for d in ("train", "evals", "report"):
        shutil.rmtree(out / d, ignore_errors=True)
        (out / d).mkdir(parents=True)
    c0 = cpu_self()
    lines: dict[tuple[str, int], str] = {}  # (training file, line) -> doc id
    for k, shard in enumerate(sorted(glob.glob(args.corpus))):
        t = pq.read_table(shard, columns=["id", "text"]).to_pydict()
        name = f"shard-{k:05d}.jsonl"
        with open(out / "train" / name, "w") as f:
            for line, (doc_id, text) in enumerate(zip(t["id"], t["text"], strict=True)):
                f.write(json.dumps({"text": text}) + "\n")
                lines[name, line] = doc_id
    items: dict[tuple[str, int], tuple[str, str]] = {}  # (reference file, line) -> item
    doc_id = 0
    for k, path in enumerate(args.bench):
        b = pq.read_table(path, columns=["bench_id", "benchmark", "prompt", "answer"]).to_pydict()
        name = f"bench-{k:03d}.jsonl"
        with open(out / "evals" / name, "w") as f:
            for row in range(len(b["bench_id"])):
                q, a = b["prompt"][row], b["answer"][row]
                f.write(json.dumps({
                    "eval_key": b["benchmark"][row], "eval_instance_index": row,
                    "split": "test", "question": q, "answer": a, "doc_id": doc_id,
                    "fingerprint": hashlib.sha256((q + a).encode()).hexdigest()[:16]}) + "\n")
                items[name, row] = (b["bench_id"][row], b["benchmark"][row])
                doc_id += 1
    config = decon.Config(training_dir=str(out / "train"), evals_dir=str(out / "evals"),
                          report_output_dir=str(out / "report"))
    settings = {a: getattr(config, a) for a in dir(config)
                if not a.startswith("_") and not callable(getattr(config, a))}
    c1, rss0, w1 = cpu_self(), rss_bytes(), time.perf_counter()
    decon.detect(config)
    c2, w2 = cpu_self(), time.perf_counter()
    best: dict[str, tuple[float, str, str]] = {}
    for report in sorted((out / "report").glob("*.jsonl")):
        for line in report.open():
            r = json.loads(line)
            doc = lines[r["training_file"], r["training_line"]]
            item, bench = items[r["reference_file"], r["eval_line"]]
            score = float(r["contamination_score"])
            if doc not in best or score > best[doc][0]:
                best[doc] = (score, item, bench)
    docs = sorted(best)
    pq.write_table(pa.table({"id": docs, "benchmark": [best[d][2] for d in docs],
                             "matched_id": [best[d][1] for d in docs],
                             "score": [best[d][0] for d in docs]}), out / "flags.parquet")
    timing = {"items": len(items), "docs": len(lines), "convert_cpu_s": c1 - c0,
              "detect_cpu_s": c2 - c1, "detect_wall_s": w2 - w1, "rss_before_detect": rss0,
              "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "version": decon.__version__, "settings": settings}
    (out / "timing.json").write_text(json.dumps(timing, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
