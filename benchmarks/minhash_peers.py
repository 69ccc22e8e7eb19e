"""MinHash near-duplicate removal: ours against peers, on the same corpus, side by side.

    .venv/bin/python benchmarks/minhash_peers.py /tmp/mhbench/20000                 # all tools
    .venv/bin/python benchmarks/minhash_peers.py SAMPLES --truth CLUSTERS --tools ours-cli,rensa
    .venv/bin/python benchmarks/minhash_peers.py /tmp/mhbench/20000 --table RESULTS.json  # reprint

CORPUS is a directory of Parquet shards (`id`, `text`) with a ground-truth `clusters.parquet`
(id, cluster_id) next to them, as written by benchmarks/minhash_corpus.py; `--truth` points
elsewhere (the shared sample kit: /work/shared/data/samples/dedup_clusters.parquet).
Every tool runs as its own process tree, one at a time, measured by
benchmarks/peers/measure.py (wall, CPU seconds and peak RSS/PSS of the whole tree).
Tools (threshold 0.8, 128 permutations, word 5-grams wherever the tool lets us say so):

  ours-cli        `curate run` of a recipe with only dedup.minhash (engine auto: in process
                  up to 100,000 rows, else embedded Ray with 2 CPUs)
  ours-cli-ray    the same with `execution.engine=ray`
  ours-inprocess  the same operator through pipelines.inprocess.run_operators (no Ray)
  ours-signatures only `minhash_signatures.text_signatures` over all texts (signature stage)
  datasketch      benchmarks/peers/datasketch_dedup.py (MinHash.update_batch + MinHashLSH)
  rensa           benchmarks/peers/rensa_dedup.py (RMinHash + RMinHashLSH, estimate check)
  rensa-exact     the same, candidates checked by exact Jaccard of the shingle sets
  text-dedup      `python -m text_dedup.minhash` in /tmp/peers/textdedup (num_proc 2)
  datatrove       benchmarks/peers/datatrove_dedup.py in /tmp/peers/datatrove-mh (2 workers)
  data-juicer     `dj-process` with document_minhash_deduplicator, JSONL input (np 2)

Scores. Pair precision/recall (curate.evaluation): two rows are a predicted pair when one
was dropped as a duplicate of the other or both were dropped in favour of the same kept
row; true pairs are all pairs inside a ground-truth cluster. Doc-level precision/recall,
for every tool (the only score for data-juicer, which outputs kept rows only): a removed
row is correct when it lies in a true cluster of size >= 2; recall is the number of
correct removals, at most size-1 per cluster, over the sum of size-1. False-positive
pairs are audited by exact Jaccard (the ground truth's tokens and shingles): `fp_j>=thr`
counts predicted pairs the ground truth lacks although they really are near-duplicates.

Writes RESULTS (default CORPUS/../results-NAME.json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "peers"))

from measure import run_measured  # noqa: E402
from minhash_corpus import jaccard, shingle_set  # noqa: E402

from curate.evaluation import precision_recall, predicted_pairs, true_pairs  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
CURATE = str(REPO / ".venv" / "bin" / "curate")
PEERS = Path("/tmp/peers")
TEXTDEDUP_PY = PEERS / "textdedup" / "bin" / "python"
DATATROVE_PY = PEERS / "datatrove-mh" / "bin" / "python"
DJ_PROCESS = PEERS / "datajuicer" / "bin" / "dj-process"
ALL_TOOLS = ["ours-cli", "ours-cli-ray", "ours-inprocess", "ours-signatures", "datasketch",
             "rensa", "rensa-exact", "text-dedup", "datatrove", "data-juicer"]
THRESHOLD = 0.8

RECIPE = """name: minhash-only
input:  {{path: "{inp}", text_column: text, id_column: id}}
output: {{path: {out}, rows_per_shard: 100000}}
execution: {{address: local, seed: 0}}
steps:
  - op: dedup.minhash
    name: near-dups
    params: {{threshold: {thr}, num_perm: 128, ngram: 5, unit: word, verify: exact}}
"""

DJ_CONFIG = """project_name: mhbench
dataset_path: {jsonl}
export_path: {out}/result.jsonl
work_dir: {out}/work
np: 2
text_keys: text
use_cache: true
ds_cache_dir: {out}/hf-cache
open_tracer: false
open_monitor: false
process:
  - document_minhash_deduplicator:
      tokenization: space
      window_size: 5
      lowercase: true
      ignore_pattern: '\\p{{P}}'
      num_permutations: 128
      jaccard_threshold: {thr}
"""


SRC: Path | None = None  # --src: run our code from this snapshot instead of the work tree


def ours_env() -> dict:
    """Environment of our tools: PYTHONPATH=SRC puts a snapshot (`git archive HEAD`) ahead
    of the editable install of the work tree (Ray workers inherit it)."""
    return {"PYTHONPATH": str(SRC)} if SRC else {}


class Corpus:
    def __init__(self, path: Path, truth: Path | None) -> None:
        self.path = path
        self.pattern = str(path / "*.parquet")
        self.truth_path = truth or path / "clusters.parquet"
        self.files = sorted(f for f in path.glob("*.parquet")
                            if f.name not in ("clusters.parquet", "planted_pairs.parquet"))
        if any(f.name in ("clusters.parquet", "planted_pairs.parquet")
               for f in path.glob("*.parquet")):
            self.pattern = str(path / "part-*.parquet")
        self.n_docs = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        t = pq.read_table(self.truth_path, columns=["id", "cluster_id"])
        self.cluster = dict(zip(t["id"].to_pylist(), t["cluster_id"].to_pylist(), strict=True))
        self.truth = true_pairs(self.cluster.items())
        sizes = Counter(self.cluster.values())
        self.size = {i: sizes[c] for i, c in self.cluster.items()}
        self.removable = sum(s - 1 for s in sizes.values() if s > 1)
        self._texts: dict[str, str] | None = None

    def texts(self) -> dict[str, str]:
        if self._texts is None:
            tables = [pq.read_table(f, columns=["id", "text"]) for f in self.files]
            t = pa.concat_tables(tables)
            self._texts = dict(zip(t["id"].to_pylist(), t["text"].to_pylist(), strict=True))
        return self._texts

    def jsonl_dir(self, work: Path) -> Path:
        """JSONL copies of the shards (for data-juicer), outside the repository."""
        out = work / "jsonl"
        if not out.exists():
            out.mkdir(parents=True)
            for f in self.files:
                t = pq.read_table(f, columns=["id", "text"])
                with open(out / (f.stem + ".jsonl"), "w") as fh:
                    for row in t.to_pylist():
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return out


# --------------------------------------------------------------------------------------
# Tools: each returns (command, env, cores, parse) where parse() -> result fields


def _dups_from_file(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        return list(zip(t["id"].to_pylist(), t["kept_id"].to_pylist(), strict=True))
    with open(path) as fh:
        return [(d["id"], d["kept_id"]) for d in map(json.loads, fh)]


def tool_ours_cli(c: Corpus, w: Path):
    recipe = w / "recipe.yaml"
    out = w / "out"
    recipe.write_text(RECIPE.format(inp=c.pattern, out=out, thr=THRESHOLD))
    cmd = [CURATE, "run", str(recipe), "--input", c.pattern, "--output", str(out),
           "--set", "execution.object_store_mb=2048"]

    def parse():
        q = "SELECT id, detail FROM dropped WHERE reason='near_duplicate'"
        text = subprocess.run([CURATE, "stats", str(out), q, "--format", "csv"], check=True,
                              capture_output=True, text=True, cwd=REPO).stdout
        dups = [(r["id"], r["detail"]) for r in csv.DictReader(io.StringIO(text))]
        ops = subprocess.run([CURATE, "stats", str(out), "SELECT step, rows_in, rows_out, "
                              "seconds FROM ops ORDER BY step", "--format", "json"],
                             check=True, capture_output=True, text=True, cwd=REPO).stdout
        return {"dups": dups, "extra": {"ops": json.loads(ops)}}

    return cmd, {"RAY_AUTH_MODE": "disabled", **ours_env()}, 2, parse


def _driver(script: str, python: str, args: list[str], cores: int):
    def make(c: Corpus, w: Path):
        out = w / "out"
        cmd = [python, str(REPO / "benchmarks" / "peers" / script), *args_for(c, out), *args]

        def parse():
            dups_file = out / "dups.parquet"
            if not dups_file.exists():
                dups_file = out / "dups.jsonl"
            timing = json.loads((out / "timing.json").read_text())
            return {"dups": _dups_from_file(dups_file) if dups_file.exists() else None,
                    "extra": timing}

        return cmd, ours_env() if script == "ours_inprocess.py" else {}, cores, parse

    def args_for(c: Corpus, out: Path) -> list[str]:
        if script == "datatrove_dedup.py":
            return [str(c.path), str(out), "--glob", Path(c.pattern).name]
        return [c.pattern, str(out)]

    return make


def tool_textdedup(c: Corpus, w: Path):
    out = w / "out"
    cmd = [str(TEXTDEDUP_PY), "-m", "text_dedup.minhash", "--path", "parquet", "--data_files",
           c.pattern, "--split", "train", "--output", str(out), "--column", "text",
           "--idx_column", "id", "--num_perm", "128", "--ngram", "5", "--threshold",
           str(THRESHOLD), "--num_proc", "2", "--hash_func", "xxh3", "--debug"]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(w / "hf")}

    def parse():
        # uf.pkl (written by --debug with --idx_column) is a text_dedup UnionFind over our
        # ids; unpickle it in text-dedup's own venv.
        code = ("import pickle,json,sys; uf=pickle.load(open(sys.argv[1],'rb'));"
                "print(json.dumps([[x, uf.find(x)] for x in uf.parent if uf.find(x)!=x]))")
        pairs = json.loads(subprocess.run([str(TEXTDEDUP_PY), "-c", code, str(out / "uf.pkl")],
                                          check=True, capture_output=True, text=True).stdout)
        log = (w / "tool.log").read_text()
        timers = {}  # text-dedup's own timer report (rich may wrap its lines)
        for name in ("Loading", "MinHashing", "Clustering", "Filtering", "Saving", "Total",
                     "Before", "After"):
            hit = re.search(rf"INFO\s+{name}\s+:\s+(?:\S+\.py:\d+\s+)?([\d.]+)", log)
            if hit:
                timers[name] = float(hit.group(1))
        return {"dups": [tuple(p) for p in pairs], "extra": timers}

    return cmd, env, 2, parse


def tool_datajuicer(c: Corpus, w: Path):
    out = w / "out"
    out.mkdir(parents=True, exist_ok=True)
    jsonl = c.jsonl_dir(w.parent)
    cfg = w / "dj.yaml"
    cfg.write_text(DJ_CONFIG.format(jsonl=jsonl, out=out, thr=THRESHOLD))
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(w / "hf")}

    def parse():
        kept = []
        for f in sorted(out.glob("result*.jsonl")):
            with open(f) as fh:
                kept += [json.loads(line)["id"] for line in fh]
        return {"dups": None, "kept_ids": kept, "extra": {}}

    return [str(DJ_PROCESS), "--config", str(cfg)], env, 2, parse


def tool_ours_cli_ray(c: Corpus, w: Path):
    cmd, env, cores, parse = tool_ours_cli(c, w)
    return [*cmd, "--set", "execution.engine=ray"], env, cores, parse


TOOLS = {
    "ours-cli": tool_ours_cli,
    "ours-cli-ray": tool_ours_cli_ray,
    "ours-inprocess": _driver("ours_inprocess.py", PY, [], 1),
    "ours-signatures": _driver("ours_inprocess.py", PY, ["--signatures-only"], 1),
    "datasketch": _driver("datasketch_dedup.py", PY, [], 1),
    "rensa": _driver("rensa_dedup.py", PY, [], 1),
    "rensa-exact": _driver("rensa_dedup.py", PY, ["--exact"], 1),
    "text-dedup": tool_textdedup,
    "datatrove": _driver("datatrove_dedup.py", str(DATATROVE_PY), [], 2),
    "data-juicer": tool_datajuicer,
}


# --------------------------------------------------------------------------------------
# Scoring


def score(c: Corpus, dups: list[tuple[str, str]] | None, kept_ids: list[str] | None) -> dict:
    res: dict = {}
    if dups is not None:
        removed = [d for d, _ in dups]
        pred = predicted_pairs(dups)
        p, r = precision_recall(pred, c.truth)
        fp = pred - c.truth
        texts = c.texts()
        sets: dict[str, set] = {}

        def sh(i: str) -> set:
            if i not in sets:
                sets[i] = shingle_set(texts[i])
            return sets[i]

        fp_j = [jaccard(sh(a), sh(b)) for a, b in sorted(fp)[:20000]]
        res.update(pairs_predicted=len(pred), precision=round(p, 4), recall=round(r, 4),
                   fp_pairs=len(fp), fn_pairs=len(c.truth - pred),
                   fp_audited=len(fp_j), fp_j_ge_thr=sum(j >= THRESHOLD for j in fp_j),
                   fp_j_median=round(sorted(fp_j)[len(fp_j) // 2], 3) if fp_j else None)
    else:
        removed = sorted(set(c.cluster) - set(kept_ids or []))
    res["removed"] = len(removed)
    res["kept"] = c.n_docs - len(removed)
    # Doc-level: correct removals are rows of true clusters, at most size-1 per cluster.
    by_cluster: dict[int, int] = defaultdict(int)
    good = 0
    for i in removed:
        if c.size.get(i, 1) > 1:
            good += 1
            by_cluster[c.cluster[i]] += 1
    sizes = Counter(c.cluster.values())
    credited = sum(min(n, sizes[k] - 1) for k, n in by_cluster.items())
    res["doc_precision"] = round(good / len(removed), 4) if removed else 1.0
    res["doc_recall"] = round(credited / c.removable, 4) if c.removable else 1.0
    return res


def bucket_audit(c: Corpus, threshold: float = THRESHOLD) -> dict:
    """Recall lost by star edges: our signatures and bands (16x6), candidates made by the
    operator's `bucket_edges` with different clique caps (1 = stars only, 16 = default,
    unbounded = all pairs in every bucket), verified by exact Jaccard, components and
    keepers as in the operator. In-process, numpy."""
    import numpy as np

    from operators.dedup.minhash_lsh import CLIQUE_MAX, band_keys, bucket_edges, choose_bands
    from operators.dedup.minhash_shingles import shingle_hashes
    from operators.dedup.minhash_signatures import text_signatures
    from operators.dedup.minhash_verify import choose_keepers, connected_components, verify_edges

    texts = c.texts()
    ids = list(texts)
    docs = [texts[i] for i in ids]
    rows = np.arange(len(ids), dtype=np.int64)
    b, r = choose_bands(threshold, 128)
    keys = band_keys(text_signatures(docs, 128, 1, 5, "word"), b, r)
    flat_k, flat_r = keys.ravel(), np.repeat(rows, b)
    out = {}
    for name, cap in {"star": 1, f"clique_max={CLIQUE_MAX}": CLIQUE_MAX,
                      "all_pairs_in_bucket": len(ids)}.items():
        t0 = time.perf_counter()
        a, bb = bucket_edges(flat_k, flat_r, cap)
        cand = np.unique(np.concatenate([a, bb]))
        sh = shingle_hashes([docs[i] for i in cand.tolist()], 5, "word")
        va, vb, _ = verify_edges(a, bb, threshold, shingles=sh, rows=cand)
        seconds = time.perf_counter() - t0
        nodes, comp = connected_components(va, vb)
        length = np.array([len(docs[i]) for i in nodes.tolist()], np.int64)
        dropped, kept = choose_keepers(nodes, comp, length)
        pred = predicted_pairs([(ids[d], ids[x]) for d, x in
                                zip(dropped.tolist(), kept.tolist(), strict=True)])
        p, rec = precision_recall(pred, c.truth)
        out[name] = {"candidate_pairs": int(len(a)), "verified": int(len(va)),
                     "edges_and_verify_s": round(seconds, 2),
                     "precision": round(p, 4), "recall": round(rec, 4)}
    return out


def run_tool(name: str, c: Corpus, work: Path) -> dict:
    w = work / name
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    cmd, env, cores, parse = TOOLS[name](c, w)
    (w / "cmd.txt").write_text(" ".join(map(str, cmd)) + "\n")
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(map(str, cmd))}", flush=True)
    m = run_measured(cmd, env=env, cwd=str(REPO), log=w / "tool.log")
    row = {"tool": name, "docs": c.n_docs, "cores": cores, **m,
           "docs_per_s_per_core": round(c.n_docs / (m["wall_s"] * cores), 1),
           "docs_per_cpu_s": round(c.n_docs / m["cpu_s"], 1) if m["cpu_s"] else None}
    if m["rc"] != 0:
        row["error"] = (w / "tool.log").read_text()[-2000:]
        print(f"  FAILED rc={m['rc']}: see {w / 'tool.log'}", flush=True)
        return row
    parsed = parse()
    row["extra"] = parsed.get("extra")
    if name != "ours-signatures":
        row.update(score(c, parsed.get("dups"), parsed.get("kept_ids")))
    print("  " + json.dumps({k: v for k, v in row.items() if k != "extra"}), flush=True)
    return row


def src_version() -> str:
    """The commit our tools ran (the snapshot's, or the work tree's HEAD, '+dirty' if so)."""
    if SRC and (SRC / "COMMIT").exists():
        return (SRC / "COMMIT").read_text().strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                            "operators", "pipelines", "curate"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def table(results: list[dict]) -> str:
    head = ("| tool | wall s | cores | docs/s/core | CPU s (tree) | docs/CPU-s | peak RSS MB "
            "| peak PSS MB | kept | P | R | doc P | doc R | load (start/mean) |")
    lines = [head, "|---" * 14 + "|"]
    for r in results:
        def f(k, fmt="{}", r=r):
            v = r.get(k)
            return "n/a" if v is None else fmt.format(v)
        lines.append(
            f"| {r['tool']} | {f('wall_s')} | {r['cores']} | {f('docs_per_s_per_core', '{:,.0f}')} "
            f"| {f('cpu_s')} | {f('docs_per_cpu_s', '{:,.0f}')} | {f('peak_rss_mb', '{:,.0f}')} "
            f"| {f('peak_pss_mb', '{:,.0f}')} | {f('kept', '{:,}')} | {f('precision', '{:.3f}')} "
            f"| {f('recall', '{:.3f}')} | {f('doc_precision', '{:.3f}')} "
            f"| {f('doc_recall', '{:.3f}')} | {r['load_start']}/{r['load_mean']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--tools", default=",".join(ALL_TOOLS))
    ap.add_argument("--work", type=Path, help="scratch (default /tmp/mhbench/work/NAME)")
    ap.add_argument("--results", type=Path, help="JSON to write/merge (default "
                    "/tmp/mhbench/results-NAME.json)")
    ap.add_argument("--table", action="store_true", help="only print the table of --results")
    ap.add_argument("--bucket-audit", action="store_true", help="only compare star edges "
                    "with all pairs per LSH bucket (recall lost by the star), in-process")
    ap.add_argument("--src", type=Path, help="run our code from this source snapshot "
                    "(e.g. `git archive HEAD | tar -x -C DIR`) instead of the work tree")
    a = ap.parse_args()
    global SRC
    SRC = a.src
    name = a.corpus.resolve().name if a.corpus.name != "corpus" else "samples"
    results_path = a.results or Path(f"/tmp/mhbench/results-{name}.json")
    old = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    if a.table:
        print(table(old["runs"]))
        return
    c = Corpus(a.corpus.resolve(), a.truth)
    if a.bucket_audit:
        print(json.dumps(bucket_audit(c), indent=1))
        return
    work = a.work or Path(f"/tmp/mhbench/work/{name}")
    print(f"corpus {c.path}: {c.n_docs:,} docs, {len(c.truth):,} true pairs, "
          f"{c.removable:,} removable; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()}", flush=True)
    runs = {r["tool"]: r for r in old["runs"]}
    for tool in a.tools.split(","):
        runs[tool] = run_tool(tool, c, work)
        runs[tool]["git"] = src_version()
        runs[tool]["at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        order = [t for t in ALL_TOOLS if t in runs] + [t for t in runs if t not in ALL_TOOLS]
        out = {"corpus": str(c.path), "docs": c.n_docs, "true_pairs": len(c.truth),
               "removable": c.removable, "runs": [runs[t] for t in order]}
        results_path.write_text(json.dumps(out, indent=1))
    print(table(out["runs"]))
    print(f"results: {results_path}")


if __name__ == "__main__":
    main()
