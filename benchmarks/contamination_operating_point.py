"""`decontam.ngram` at the near-miss rate of each peer: recall per kind along its threshold.

    .venv/bin/python benchmarks/contamination_operating_point.py [--work /tmp/curate-contam]
        [--index dev] [--peers WORK/results.json]

The issue asks curate to beat the peers on rephrased leaks "at a near-miss rate no higher
than theirs". The default threshold (0.1) is one point; this script gives the curve. One
`curate run` of the n-gram step (`benchmarks/contamination.py`'s recipe, `action: annotate`)
with `threshold` 0.01 records every row's best-item score; a row is flagged at threshold t
exactly when that score is >= t (the best item and the `min_grams` rule do not depend on
t), so every threshold is read off the one run. For each peer in `--peers` (the results of
`contamination.py` on the same dev set and index) it reports curate's lowest threshold whose
near-miss rate is no higher than the peer's, and the recall per kind there.
Results: WORK/operating_point.json and .md (also printed).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from contamination import LEAK_KINDS, NEAR_KINDS, curate_arm, index_files  # noqa: E402

# Matching uses every 0.01 from 0.02 to 0.60; the table prints these.
THRESHOLDS = tuple(round(0.01 * k, 2) for k in range(2, 61))
SHOWN = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
REPHRASED = ("paraphrase", "code_renamed")


def best_scores(out: Path) -> dict[str, float]:
    """Each flagged row's best-item score from the run's signals."""
    run = sorted(glob.glob(str(out / "out" / "_curate" / "runs" / "*")))[-1]
    sig = pq.read_table(Path(run) / "signals", columns=["id", "key", "num", "op"])
    sig = sig.filter(pc.and_(pc.equal(sig["key"], "score"),
                             pc.equal(sig["op"], "decontam.ngram")))
    return dict(zip(sig["id"].to_pylist(), sig["num"].to_pylist(), strict=True))


def groups(truth: list[dict]) -> dict[str, list[str]]:
    """Doc ids per leak and near-miss kind, and of all near misses and all clean docs."""
    out = {k: [r["id"] for r in truth if r["kind"] == k] for k in (*LEAK_KINDS, *NEAR_KINDS)}
    for role in ("near_miss", "clean"):
        out[role] = [r["id"] for r in truth if r["role"] == role]
    return out


def rates(scores: dict[str, float], by: dict[str, list[str]], t: float) -> dict:
    """Recall per leak kind, near-miss and clean flag rates at threshold t."""
    flagged = {d for d, s in scores.items() if s is not None and s >= t - 1e-12}

    def share(ids: list[str]) -> float:
        return sum(i in flagged for i in ids) / max(len(ids), 1)

    return {"threshold": t, "recall": {k: share(by[k]) for k in LEAK_KINDS},
            "near_miss": share(by["near_miss"]),
            "near_miss_kind": {k: share(by[k]) for k in NEAR_KINDS},
            "clean_fp": share(by["clean"])}


def peer_rates(path: Path, index: str) -> dict[str, dict]:
    """Near-miss rate and recall per kind of each peer arm in a `contamination.py` run."""
    runs = json.loads(path.read_text())["runs"].get(index, {})
    out = {}
    for arm in ("gpt3-13gram", "decon"):
        s = runs.get(arm, {}).get("score")
        if s:
            k, n = s["near_miss_all"]
            out[arm] = {"near_miss": k / n,
                        "recall": {kind: a / max(b, 1) for kind, (a, b) in s["recall"].items()}}
    return out


def markdown(curve: list[dict], peers: dict, matched: dict) -> str:
    head = ["threshold", *LEAK_KINDS, "near misses", "clean FP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in curve:
        if r["threshold"] not in SHOWN:
            continue
        lines.append("| " + " | ".join([f"{r['threshold']:g}",
                                        *(f"{r['recall'][k]:.0%}" for k in LEAK_KINDS),
                                        f"{r['near_miss']:.1%}", f"{r['clean_fp']:.2%}"]) + " |")
    lines += ["", "| at the near-miss rate of | its near misses | curate threshold | curate "
              "near misses | " + " | ".join(f"{k}: curate vs peer" for k in REPHRASED) + " |",
              "|---|---|---|---|" + "---|" * len(REPHRASED)]
    for arm, m in matched.items():
        p = peers[arm]
        if m is None:
            lines.append(f"| {arm} | {p['near_miss']:.1%} | none reaches it | - |"
                         + " - |" * len(REPHRASED))
            continue
        lines.append(f"| {arm} | {p['near_miss']:.1%} | {m['threshold']:g} | "
                     f"{m['near_miss']:.1%} | " + " | ".join(
                         f"{m['recall'][k]:.0%} vs {p['recall'][k]:.0%}" for k in REPHRASED)
                     + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-contam"))
    ap.add_argument("--index", default="dev", choices=("dev", "big"))
    ap.add_argument("--peers", type=Path, help="contamination.py results.json "
                    "(default WORK/results.json)")
    args = ap.parse_args()
    dev = args.work / "devset"
    if not (dev / "truth.parquet").exists():
        raise SystemExit(f"no dev set in {dev}: run benchmarks/contamination_devset.py")
    out = args.work / "runs" / args.index / "ngram-threshold-0.01"
    curate_arm(["decontam.ngram"], dev, index_files(dev, args.index), out,
               {"decontam.ngram": {"threshold": 0.01}})
    scores = best_scores(out)
    by = groups(pq.read_table(dev / "truth.parquet").to_pylist())
    curve = [rates(scores, by, t) for t in THRESHOLDS]
    peers = peer_rates(args.peers or args.work / "results.json", args.index)
    matched = {}
    for arm, p in peers.items():
        ok = [r for r in curve if r["near_miss"] <= p["near_miss"] + 1e-12]
        matched[arm] = ok[0] if ok else None
    (args.work / "operating_point.json").write_text(json.dumps(
        {"index": args.index, "curve": curve, "peers": peers, "matched": matched},
        indent=1) + "\n")
    md = markdown(curve, peers, matched)
    (args.work / "operating_point.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
