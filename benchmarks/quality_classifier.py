"""Held-out AUC of `train_quality` on the sample quality set (YouTube spam vs ham).

Splits /work/shared/data/samples/quality.parquet (read-only) into positive (ham) and
negative (spam) Parquet files under a temporary directory, trains with the default
settings, and prints the report plus the scoring speed of the saved model.

    .venv/bin/python benchmarks/quality_classifier.py [--quality PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.train_quality import train_quality  # noqa: E402
from operators.quality.classifier import load_model  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "samples" / "quality.parquet"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", default=str(SAMPLE))
    ap.add_argument("--out", default=None, help="work dir (default: a fresh temp dir)")
    ap.add_argument("--seeds", type=int, default=3, help="report AUC over this many splits")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="curate-quality-"))
    table = pq.read_table(args.quality)
    (work / "pos").mkdir(parents=True, exist_ok=True)
    (work / "neg").mkdir(parents=True, exist_ok=True)
    pq.write_table(table.filter(pc.equal(table["label"], "ham")), work / "pos" / "ham.parquet")
    pq.write_table(table.filter(pc.equal(table["label"], "spam")), work / "neg" / "spam.parquet")
    reports = []
    for seed in range(args.seeds):
        reports.append(train_quality(str(work / "pos" / "*.parquet"),
                                     str(work / "neg" / "*.parquet"),
                                     str(work / f"model-seed{seed}"), seed=seed))
    print(json.dumps(reports[0], indent=2))
    aucs = [r["auc"] for r in reports]
    accs = [r["accuracy"] for r in reports]
    print(f"held-out AUC per seed {aucs} (mean {sum(aucs) / len(aucs):.4f}); "
          f"accuracy {accs} (mean {sum(accs) / len(accs):.4f})")
    model = load_model(work / "model-seed0")
    texts = table["text"].to_pylist()
    start = time.perf_counter()
    model.score(texts * 10)
    dt = time.perf_counter() - start
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"scoring: {len(texts) * 10 / dt:.0f} texts/s (mean {mean_chars:.0f} chars), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
