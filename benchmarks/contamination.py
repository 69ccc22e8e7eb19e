"""Decontamination side by side: curate's `decontam.ngram`, `decontam.embedding` and both,
a GPT-3/lm-eval 13-gram baseline and `decontaminate` (allenai/decon) on one dev set.

    .venv/bin/python benchmarks/contamination.py [--work /tmp/curate-contam]
        [--arms ngram,embedding,union,gpt3-13gram,decon] [--index dev,big]
        [--decon-python /tmp/decon312/bin/python]

Data: the dev set of `contamination_devset.py` (built into WORK/devset when missing):
the sample kit's planted corpus (11,856 docs) with its 300 GSM8K plants, plus held-out GSM8K
near misses, question-only and half leaks, and stdlib code leaks (verbatim, renamed) with
same-module near misses. Indexes: `dev` = the 1,019 GSM8K items left in the index plus 200
code items (1,219); `big` = `dev` plus 11,373 other stdlib functions as distractors
(12,592 items: the >= 10k-item throughput index; every dev-set label still holds).

Arms, each a separate process on the same files:
- curate arms: `.venv/bin/curate run` of a recipe with the operator(s) at their defaults and
  `action: annotate` (every row kept); a row is flagged when a decontam step wrote a
  `matched_id` signal for it; the reported item is that signal (the n-gram step's first in
  the union). `execution.tokenizer: none` (token counting is not decontamination work).
- `gpt3-13gram`: `contamination_gpt3.py` (the rule written from its description).
- `decon`: `contamination_decon.py` in a Python >= 3.12 venv with `decontaminate` (created
  with pyenv's 3.12.1 when missing; the arm is skipped with the reason otherwise).

Metrics: recall per planted kind; attribution (flagged leaks whose reported item is the
planted one); near-miss flag rate per kind; clean false-positive rate; docs per CPU-second
(per core) from the arm's own timing of its decontamination work (curate: `ops.seconds`
of the decontam steps, CPU time) and from the whole child process tree (start-up,
reading, writing included), with peak RSS and the index memory each arm reports.
Results: WORK/results.json and WORK/results.md (also printed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from peers.measure import run_measured  # noqa: E402

CURATE = REPO / ".venv" / "bin" / "curate"
PYTHON = REPO / ".venv" / "bin" / "python"
LEAK_KINDS = ("verbatim", "light", "paraphrase", "question", "half", "code_verbatim",
              "code_renamed")
NEAR_KINDS = ("near_verbatim", "near_light", "near_paraphrase", "near_code")
# A curate arm is one recipe; `both` (n-gram then embedding, both annotating) also yields
# each step's own flags, which are what a recipe of that step alone flags: annotate keeps
# every row, so each step sees the whole input.
CURATE_ARMS = {"ngram": ["decontam.ngram"], "embedding": ["decontam.embedding"],
               "both": ["decontam.ngram", "decontam.embedding"]}
ALL_ARMS = ("ngram", "both", "gpt3-13gram", "decon")


def index_files(dev: Path, which: str) -> list[str]:
    files = [str(dev / "index" / "gsm8k.parquet"), str(dev / "index" / "pystdlib.parquet")]
    if which == "big":
        files.append(str(dev / "filler" / "pystdlib_filler.parquet"))
    return files


# ---------------------------------------------------------------- arms
# Each returns (flags: {doc id: (matched_id, benchmark)}, timing dict).

def curate_arm(ops: list[str], dev: Path, bench: list[str], out: Path,
               extra: dict[str, dict] | None = None) -> tuple[dict[str, dict], dict]:
    """One `curate run` with `ops` in order; flags per step ("decontam.ngram", ...) and of
    all steps together ("union": the first step's item where several flag a row)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    params = {"benchmarks": bench, "id_column": "bench_id", "text_columns": ["text"],
              "benchmark_column": "benchmark", "action": "annotate"}
    recipe = {"name": "contamination-" + "-".join(o.split(".")[1] for o in ops),
              "input": {"path": str(dev / "corpus" / "*.parquet"), "text_column": "text",
                        "id_column": "id"},
              "output": {"path": str(out / "out")},
              "execution": {"address": "local", "seed": 0, "tokenizer": "none"},
              "steps": [{"op": o, "params": {**params, **(extra or {}).get(o, {})}}
                        for o in ops]}
    (out / "recipe.yaml").write_text(json.dumps(recipe, indent=1) + "\n")  # JSON is YAML
    m = run_measured([str(CURATE), "run", str(out / "recipe.yaml")], log=out / "run.log")
    if m["rc"] != 0:
        tail = (out / "run.log").read_text()[-2000:]
        raise RuntimeError(f"curate run failed (rc {m['rc']}): {tail}")
    runs = sorted(glob.glob(str(out / "out" / "_curate" / "runs" / "*")))
    opst = pq.read_table(Path(runs[-1]) / "ops.parquet").to_pylist()
    steps = {r["step"]: r for r in opst if str(r["op"]).startswith("decontam.")}
    sig = pa.concat_tables(pq.read_table(f) for f in
                           glob.glob(str(Path(runs[-1]) / "signals" / "*.parquet")))
    rows = sig.filter(pa.compute.is_in(sig["key"], pa.array(["matched_id", "benchmark"])))
    per: dict[tuple[int, str], dict] = {}
    for r in rows.to_pylist():
        if r["step"] in steps and r["text"] is not None:
            per.setdefault((r["step"], r["id"]), {})[r["key"]] = r["text"]
    flags: dict[str, dict] = {steps[k]["op"]: {} for k in steps}
    flags["union"] = {}
    for (step, doc), v in sorted(per.items()):  # steps in order: the first step's item wins
        if "matched_id" in v:
            flags[steps[step]["op"]][doc] = (v["matched_id"], v.get("benchmark"))
            flags["union"].setdefault(doc, (v["matched_id"], v.get("benchmark")))
    timing = {"ops_cpu_s": sum(s["seconds"] for s in steps.values()),
              "per_step": {s["op"]: {"seconds": s["seconds"], "metrics": s["metrics"]}
                           for s in steps.values()},
              **m}
    return flags, timing


def read_flags(path: Path) -> dict:
    t = pq.read_table(path).to_pydict()
    return {d: (m, b) for d, m, b in zip(t["id"], t["matched_id"], t["benchmark"], strict=True)}


def script_arm(python: str, script: str, dev: Path, bench: list[str], out: Path
               ) -> tuple[dict, dict, dict]:
    """Run a peer's script (flags.parquet and timing.json into `out`), measured."""
    cmd = [python, str(REPO / "benchmarks" / script),
           "--corpus", str(dev / "corpus" / "*.parquet"), "--out", str(out)]
    for b in bench:
        cmd += ["--bench", b]
    out.mkdir(parents=True, exist_ok=True)
    m = run_measured(cmd, log=out / "run.log")
    if m["rc"] != 0:
        raise RuntimeError((out / "run.log").read_text()[-2000:])
    return read_flags(out / "flags.parquet"), json.loads((out / "timing.json").read_text()), m


def gpt3_arm(dev: Path, bench: list[str], out: Path) -> tuple[dict, dict]:
    flags, t, m = script_arm(str(PYTHON), "contamination_gpt3.py", dev, bench, out)
    return flags, {**t, "ops_cpu_s": t["index_cpu_s"] + t["scan_cpu_s"], **m}


def decon_python(path: str) -> tuple[str | None, str]:
    """The interpreter for the decon arm, creating its venv with pyenv 3.12.1 if missing."""
    if Path(path).exists():
        return path, ""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None, f"{path} missing and no pyenv to create a Python 3.12 venv"
    venv = Path(path).parents[1]
    env = {**os.environ, "PYENV_VERSION": "3.12.1"}
    r = subprocess.run([pyenv, "exec", "python", "-m", "venv", str(venv)], env=env,
                       capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "decontaminate",
                            "pyarrow"], capture_output=True, text=True)
    if r.returncode != 0 or not Path(path).exists():
        return None, f"could not create {venv}: {r.stderr[-300:]}"
    return path, ""


def decon_arm(python: str, dev: Path, bench: list[str], out: Path) -> tuple[dict, dict]:
    flags, t, m = script_arm(python, "contamination_decon.py", dev, bench, out)
    return flags, {**t, "ops_cpu_s": t["detect_cpu_s"], **m}


# ---------------------------------------------------------------- metrics

def score(flags: dict, truth: list[dict]) -> dict:
    """Recall per leak kind, attribution, near-miss flag rate per kind, clean FP rate."""
    res: dict = {"recall": {}, "near_miss": {}}
    attributed = correct = 0
    for kind in LEAK_KINDS:
        rows = [r for r in truth if r["role"] == "leak" and r["kind"] == kind]
        hit = [r for r in rows if r["id"] in flags]
        res["recall"][kind] = (len(hit), len(rows))
        for r in hit:
            if flags[r["id"]][0] is not None:
                attributed += 1
                correct += flags[r["id"]][0] == r["bench_id"]
    for kind in NEAR_KINDS:
        rows = [r for r in truth if r["role"] == "near_miss" and r["kind"] == kind]
        res["near_miss"][kind] = (sum(r["id"] in flags for r in rows), len(rows))
    leaks = [r for r in truth if r["role"] == "leak"]
    near = [r for r in truth if r["role"] == "near_miss"]
    clean = [r for r in truth if r["role"] == "clean"]
    res["recall_all"] = (sum(r["id"] in flags for r in leaks), len(leaks))
    res["near_miss_all"] = (sum(r["id"] in flags for r in near), len(near))
    res["clean_fp"] = (sum(r["id"] in flags for r in clean), len(clean))
    res["attribution"] = (correct, attributed)
    res["clean_fp_ids"] = sorted(r["id"] for r in clean if r["id"] in flags)[:20]
    return res


def pct(pair: tuple[int, int]) -> str:
    k, n = pair
    return f"{100 * k / n:.1f}%" if n else "n/a"


def markdown(rep: dict) -> str:
    lines = [f"Run {rep['started']}, code {rep['commit']}, {rep['cpus']} CPUs.", ""]
    for which, arms in rep["runs"].items():
        items = rep["index_items"][which]
        lines += [f"### Index `{which}` ({items:,} items), {rep['docs']:,} docs", ""]
        head = ["arm"] + list(LEAK_KINDS) + ["all leaks", "attribution"] + \
            list(NEAR_KINDS) + ["near misses", "clean FP"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm, a in arms.items():
            if "skipped" in a:
                lines.append(f"| {arm} | skipped: {a['skipped']} |")
                continue
            s = a["score"]
            cells = [pct(s["recall"][k]) for k in LEAK_KINDS] + \
                [pct(s["recall_all"]), pct(s["attribution"])] + \
                [pct(s["near_miss"][k]) for k in NEAR_KINDS] + \
                [pct(s["near_miss_all"]), f"{pct(s['clean_fp'])} ({s['clean_fp'][0]})"]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines += ["", "| arm | decontam CPU s | docs/CPU-s (decontam) | process tree CPU s | "
                  "docs/CPU-s (whole run) | wall s | peak RSS MB | index memory | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm, a in arms.items():
            if "skipped" in a:
                continue
            t = a["timing"]
            whole = ("(in the union's run) | - | - | -" if t["cpu_s"] is None else
                     f"{t['cpu_s']:.1f} | {rep['docs'] / t['cpu_s']:,.1f} | {t['wall_s']:.0f} | "
                     f"{t['peak_rss_mb']:,.0f}")
            lines.append(
                f"| {arm} | {t['ops_cpu_s']:.2f} | {rep['docs'] / t['ops_cpu_s']:,.1f} | "
                f"{whole} | {a['index_memory']} | {t['load_mean']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def index_memory(arm: str, t: dict) -> str:
    if arm == "gpt3-13gram":
        return f"{t['index_bytes'] / 2**20:.1f} MB (RSS growth while building)"
    if arm == "decon":
        return (f"peak RSS {t['peak_rss'] / 2**20:.0f} MB - {t['rss_before_detect'] / 2**20:.0f}"
                " MB before detect")
    found = []
    for step, s in t.get("per_step", {}).items():
        metrics = s["metrics"]
        if isinstance(metrics, str):
            try:
                metrics = json.loads(metrics)
            except ValueError:
                metrics = {}
        for k, v in (metrics or {}).items():
            if "bytes" in k and isinstance(v, (int, float)):
                found.append(f"{step.split('.')[-1]} {k} {v / 2**20:.1f} MB")
    return "; ".join(found) or "not reported"


def code_version() -> str:
    """HEAD, plus a digest of uncommitted changes to the operators measured."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    diff = subprocess.run(git + ["diff", "HEAD", "--", "operators/decontam"],
                          capture_output=True, text=True).stdout
    untracked = subprocess.run(git + ["ls-files", "--others", "--exclude-standard",
                                      "operators/decontam"], capture_output=True,
                               text=True).stdout
    if not diff and not untracked:
        return head
    import hashlib

    return f"{head}+dirty:{hashlib.sha256((diff + untracked).encode()).hexdigest()[:8]}"


def make_subset(full: Path, out: Path, clean: int, limit: int | None, seed: int) -> Path:
    """A smaller corpus for the slow arms: every leak and near miss plus `clean` clean
    docs drawn with `seed` (then at most `limit` docs in all, drawn the same way), in the
    full corpus's order; index, filler and truth files are linked."""
    truth = pq.read_table(full / "truth.parquet").to_pylist()
    rng = random.Random(seed)
    clean_ids = [r["id"] for r in truth if r["role"] == "clean"]
    keep = {r["id"] for r in truth if r["role"] != "clean"} | set(rng.sample(clean_ids, clean))
    if limit is not None and limit < len(keep):
        keep = set(rng.sample(sorted(keep), limit))
    shutil.rmtree(out, ignore_errors=True)
    (out / "corpus").mkdir(parents=True)
    for name in ("index", "filler", "truth.parquet", "devset.json"):
        (out / name).symlink_to(full / name)
    for f in sorted((full / "corpus").glob("*.parquet")):
        t = pq.read_table(f)
        pq.write_table(t.filter(pa.compute.is_in(t["id"], pa.array(sorted(keep)))),
                       out / "corpus" / f.name)
    return out


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    dev = Path(args.devset) if args.devset else work / "devset"
    if not (dev / "truth.parquet").exists():
        subprocess.run([str(PYTHON), str(REPO / "benchmarks" / "contamination_devset.py"),
                        "--out", str(dev)], check=True, stdout=subprocess.DEVNULL)
    if args.subset_clean is not None:
        dev = make_subset(dev, work / "subset", args.subset_clean, args.subset_limit, 0)
    ids = {i for f in glob.glob(str(dev / "corpus" / "*.parquet"))
           for i in pq.read_table(f, columns=["id"])["id"].to_pylist()}
    truth = [r for r in pq.read_table(dev / "truth.parquet").to_pylist() if r["id"] in ids]
    rep: dict = {"devset": json.loads((dev / "devset.json").read_text()), "docs": len(truth),
                 "index_items": {}, "runs": {}, "cpus": len(os.sched_getaffinity(0)),
                 "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "commit": code_version()}
    arms = args.arms.split(",")
    for which in args.index.split(","):
        bench = index_files(dev, which)
        rep["index_items"][which] = sum(pq.read_metadata(b).num_rows for b in bench)
        rep["runs"][which] = {}
        for arm in arms:
            print(f"[{time.strftime('%H:%M:%S')}] {which} {arm}", file=sys.stderr, flush=True)
            out = work / "runs" / which / arm
            try:
                if arm in CURATE_ARMS:
                    per_step, timing = curate_arm(CURATE_ARMS[arm], dev, bench, out,
                                                  json.loads(args.op_params))
                    if arm == "both":
                        for op in CURATE_ARMS[arm]:
                            one = {**timing, "ops_cpu_s": timing["per_step"][op]["seconds"],
                                   "per_step": {op: timing["per_step"][op]},
                                   "cpu_s": None, "wall_s": None, "peak_rss_mb": None}
                            rep["runs"][which][f"{op} (in both)"] = {
                                "score": score(per_step[op], truth), "timing": one,
                                "index_memory": index_memory(arm, one)}
                        flags, arm = per_step["union"], "union (both steps)"
                    else:
                        flags = per_step[CURATE_ARMS[arm][0]]
                elif arm == "gpt3-13gram":
                    flags, timing = gpt3_arm(dev, bench, out)
                elif arm == "decon":
                    python, why = decon_python(args.decon_python)
                    if python is None:
                        print(f"decon skipped: {why}", file=sys.stderr)
                        rep["runs"][which][arm] = {"skipped": why}
                        continue
                    flags, timing = decon_arm(python, dev, bench, out)
                else:
                    raise SystemExit(f"unknown arm {arm!r}; arms: {', '.join(ALL_ARMS)}")
            except RuntimeError as e:
                print(f"{arm} failed: {e}", file=sys.stderr)
                rep["runs"][which][arm] = {"skipped": f"failed: {str(e)[-200:]}"}
                continue
            rep["runs"][which][arm] = {"score": score(flags, truth), "timing": timing,
                                       "index_memory": index_memory(arm, timing)}
            (work / "results.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/curate-contam")
    ap.add_argument("--arms", default=",".join(ALL_ARMS))
    ap.add_argument("--index", default="dev,big")
    ap.add_argument("--decon-python", default="/tmp/decon312/bin/python")
    ap.add_argument("--op-params", default="{}", help="JSON {op: {param: value}} over the "
                    "defaults (quick checks only; the figures use the defaults)")
    ap.add_argument("--devset", help="dev set directory (default WORK/devset, built if "
                    "missing)")
    ap.add_argument("--subset-clean", type=int, help="run on every leak and near miss plus "
                    "this many clean docs (seeded): for the embedding arms' CPU cost")
    ap.add_argument("--subset-limit", type=int, help="with --subset-clean: at most this many "
                    "docs in all (seeded draw)")
    args = ap.parse_args()
    if Path(args.work).resolve().is_relative_to(REPO):
        raise SystemExit("--work must lie outside the repository")
    rep = run(args)
    text = markdown(rep)
    Path(args.work, "results.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    Path(args.work, "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
