"""Scale run: `embed` (static) -> `dedup.semantic` through `curate run` on Ray, 100k to 1M docs.

    .venv/bin/python benchmarks/semantic_scale.py 100000 300000 1000000
    .venv/bin/python benchmarks/semantic_scale.py 100000 --object-store-mb 2048 --timeout 3600
    .venv/bin/python benchmarks/semantic_scale.py --table       # reprint the saved results

Corpus: /tmp/curate-semantic-scale/N (made once, then reused) by
`benchmarks/minhash_corpus.generate` with seed 0: 150-300-word documents recombined from
paragraph runs of the real sample corpus (shared/data/samples/corpus, read in place),
10% of them with 1-3 planted near-copies (1-5% of their words edited), shuffled.

Code: the committed HEAD (or --commit), exported by `git archive` to ROOT/src/SHA
and put first on PYTHONPATH (the driver and every Ray worker inherit it), so edits other
engineers have in the shared work tree are not what gets measured.

Run: `curate run` of a generated recipe, `embed` (backend static) then `dedup.semantic`
with its default parameters but `eps` (`--eps`, 0.02: static vectors),
`execution.engine: ray` on an embedded Ray (num_cpus, object store and concurrency from
the flags). Every 0.5 s the process tree (driver,
GCS, raylet, agents, Ray workers) is sampled from /proc: summed RSS; every 2 s also
summed PSS and USS (smaps_rollup), the bytes allocated in the raylet's plasma file in
/dev/shm (the object store's high-water mark: tmpfs pages stay allocated once written)
and the bytes Ray has spilled under its session directory. CPU time is attributed to
each process's title (`ray::<task or actor>` for Ray workers): which work ran when.
After the run, `curate stats` gives the per-step rows and CPU seconds (`ops.seconds`),
the dedup.semantic step metrics (`ops.metrics`), K (rows of the `fitted` centroids)
and the dropped rows, scored against the planted near-copy groups.
Results: /tmp/curate-semantic-scale/results.json (with the timelines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/tmp/curate-semantic-scale")
CURATE = REPO / ".venv" / "bin" / "curate"
RESULTS = ROOT / "results.json"
SEMANTIC = "dedup.semantic"

RECIPE = """\
name: semantic-scale
input: {{path: "{inp}", text_column: text, id_column: id}}
output: {{path: {out}, rows_per_shard: 100000}}
execution: {{address: local, seed: 0, engine: ray, num_cpus: {cpus},
             object_store_mb: {store}, concurrency: {conc}}}
steps:
  - op: embed
    params: {{backend: static}}
  - op: dedup.semantic
    params: {{eps: {eps}}}
"""


# --------------------------------------------------------------------------------------
# Inputs: corpus and code snapshot


def ensure_corpus(n: int) -> Path:
    """ROOT/N holding N documents (generated once, seed 0, then reused)."""
    path = ROOT / str(n)
    if not (path / "manifest.json").exists():
        sys.path.insert(0, str(REPO / "benchmarks"))
        import minhash_corpus

        print(f"[{time.strftime('%H:%M:%S')}] generating {path}", flush=True)
        minhash_corpus.generate(n, path, seed=0)
    return path


def snapshot(rev: str) -> Path:
    """The committed tree of `rev` (default HEAD), exported once to ROOT/src/SHA."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    dest = ROOT / "src" / sha[:12]
    if not (dest / "COMMIT").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / "COMMIT").write_text(sha + "\n")
    return dest


# --------------------------------------------------------------------------------------
# Process-tree sampling from /proc


def _children(pid: int) -> list[int]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return kids


def tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += _children(pid)
    return out


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _rollup(pid: int) -> tuple[int, int]:
    """(PSS, USS) bytes from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, 0
    kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines[1:] if ln.endswith("kB")}
    return kb.get("Pss", 0) << 10, (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) << 10


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def title(pid: int, root: int) -> str:
    """What a process does: the curate driver, a Ray worker's `ray::` title, or its program."""
    if pid == root:
        return "curate driver (incl. k-means fit)"
    argv = _cmdline(pid)
    if not argv or not argv[0]:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split(" ")[0]
    prog = Path(argv[0]).name
    if prog.startswith("python"):  # the script it runs, past any interpreter flags
        prog = Path(next((x for x in argv[1:] if not x.startswith("-")), prog)).name
    return prog


def _shm_allocated(pid: int) -> int:
    """Bytes allocated in the /dev/shm files the process holds open: the raylet's plasma
    store. tmpfs allocates a page when it is first written, so this is the object store's
    high-water mark, not its current use (plasma reuses freed space, it never returns it)."""
    total = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = f"/proc/{pid}/fd/{fd}"
            with contextlib.suppress(OSError):
                if os.readlink(link).startswith("/dev/shm/"):
                    total += os.stat(link).st_blocks * 512
    return total


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


@dataclass
class Sampler:
    """Samples the tree under `root` every `interval` s in a thread (see the module doc)."""

    root: int
    interval: float = 0.5
    t0: float = field(default_factory=time.perf_counter)
    peak: dict = field(default_factory=lambda: {"rss": 0, "pss": 0, "uss": 0, "shm": 0,
                                                "spill": 0})
    timeline: list = field(default_factory=list)
    by_title: dict = field(default_factory=dict)  # title -> [cpu s, first, last active s]
    cpu_last: dict = field(default_factory=dict)  # pid -> last CPU seconds seen
    loads: list = field(default_factory=list)
    session: Path | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            self.sample(full=k % 4 == 0)
            k += 1
            self._stop.wait(self.interval)

    def sample(self, full: bool) -> None:
        now = round(time.perf_counter() - self.t0, 1)
        pids = tree(self.root)
        rss = pss = uss = shm = 0
        for pid in pids:
            rss += _rss(pid)
            cpu = _cpu_seconds(pid)
            if cpu is None:
                continue
            name = title(pid, self.root)
            delta = cpu - self.cpu_last.get(pid, 0.0)
            self.cpu_last[pid] = cpu
            rec = self.by_title.setdefault(name, [0.0, None, None])
            rec[0] += delta
            if delta > 0.05:
                rec[1] = now if rec[1] is None else rec[1]
                rec[2] = now
            if full:
                p, u = _rollup(pid)
                pss, uss = pss + p, uss + u
                if name == "raylet":
                    shm = _shm_allocated(pid)
                    self.session = self.session or _session_dir(pid)
        point = {"t": now, "rss_mb": rss >> 20, "procs": len(pids)}
        self.peak["rss"] = max(self.peak["rss"], rss)
        if full:
            spill = sum(_dir_bytes(d) for d in self.session.glob("ray_spilled_objects*")) \
                if self.session else 0
            self.peak.update(pss=max(self.peak["pss"], pss), uss=max(self.peak["uss"], uss),
                             shm=max(self.peak["shm"], shm),
                             spill=max(self.peak["spill"], spill))
            load = os.getloadavg()[0]
            self.loads.append(load)
            point.update(pss_mb=pss >> 20, uss_mb=uss >> 20, store_mb=shm >> 20,
                         spill_mb=spill >> 20, load1=round(load, 2))
        self.timeline.append(point)


def _session_dir(raylet: int) -> Path | None:
    for arg in _cmdline(raylet):
        if arg.startswith("--session_dir="):
            return Path(arg.split("=", 1)[1])
    return None


_PROGRESS = re.compile(r"^step (\d+) (\S+)(?: \[([^\]]+)\])?:")
_FUNNEL_ROW = re.compile(r"^\W*(\d+)\W+(\S+)\W+(\S+)((?:\W+[\d,.]+){6})\W*$")


def _copy_timestamped(stream, log: Path, t0: float, stages: dict) -> None:
    """Each output line to `log` prefixed by its elapsed second; for every progress line
    of `curate run` ("step N NAME [STAGE]: ..."), the first and last second it was seen."""
    with open(log, "w", buffering=1) as out:  # line-buffered: the log can be followed
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            t = round(time.perf_counter() - t0, 1)
            out.write(f"[{t:8.1f}] {line}\n")
            m = _PROGRESS.match(line)
            if m:
                key = f"{m[1]} {m[2]}" + (f" [{m[3]}]" if m[3] else "")
                stages.setdefault(key, [t, t])[1] = t


def funnel(log: Path) -> dict[str, dict]:
    """The final funnel `curate run` prints: step -> cpu s and wall s (first batch start
    to last batch end; steps overlap)."""
    rows = {}
    for line in log.read_text().splitlines():
        m = _FUNNEL_ROW.match(line.split("] ", 1)[-1])
        if m:
            cells = re.findall(r"[\d,.]+", m[4])
            rows[m[1]] = {"name": m[2], "cpu_s": float(cells[3]), "wall_s": float(cells[4])}
    return rows


def run_measured(cmd: list[str], env: dict, cwd: Path, log: Path,
                 timeout: float | None) -> dict:
    """Run `cmd`, sampling its tree; wall, peaks, CPU (tree and by title), load, and
    when each step/stage showed progress."""
    load0 = os.getloadavg()
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    # Unbuffered, so each line is stamped when it is printed; wide, so the funnel fits.
    full_env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    copier = threading.Thread(target=_copy_timestamped, args=(proc.stdout, log, t0, stages),
                              daemon=True)
    copier.start()
    sampler = Sampler(proc.pid, t0=t0)
    sampler.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C first: curate then shuts its embedded Ray down (a killed driver can
        # leave the raylet and workers behind).
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop()
    copier.join(timeout=10)
    mb = {k: round(v / 2**20) for k, v in sampler.peak.items()}
    titles = {name: {"cpu_s": round(c, 1), "first_s": a, "last_s": b}
              for name, (c, a, b) in sorted(sampler.by_title.items(), key=lambda kv: -kv[1][0])
              if c >= 0.5}
    return {"rc": rc, "wall_s": round(wall, 1),
            "cpu_s": round(sum(r[0] for r in sampler.by_title.values()), 1),
            "peak_rss_mb": mb["rss"], "peak_pss_mb": mb["pss"], "peak_uss_mb": mb["uss"],
            "object_store_allocated_peak_mb": mb["shm"], "spilled_peak_mb": mb["spill"],
            "uptime_before": [round(x, 2) for x in load0],
            "uptime_after": [round(x, 2) for x in os.getloadavg()],
            "load1_mean": round(float(np.mean(sampler.loads)), 2) if sampler.loads else None,
            "load1_max": round(max(sampler.loads), 2) if sampler.loads else None,
            "cpu_by_title": titles, "progress_seen_s": stages, "funnel": funnel(log),
            "timeline": sampler.timeline}


# --------------------------------------------------------------------------------------
# After the run: curate stats and the planted groups


def stats(out: Path, sql: str, env: dict, cwd: Path) -> pa.Table:
    text = subprocess.run([str(CURATE), "stats", str(out), sql, "--format", "csv",
                           "--memory-limit", "2GB"], check=True, capture_output=True,
                          env={**os.environ, **env}, cwd=cwd).stdout
    return pacsv.read_csv(pa.py_buffer(text))


def planted_scores(corpus: Path, dropped: pa.Table) -> dict:
    """Removed rows against the planted near-copy groups (source + its 1-3 copies).

    A removal is `planted` when the removed row and the row it chains to (`detail`) were
    planted in the same group; `other` otherwise (two unrelated documents, or a copy
    chained to a row of another group). Recall: planted removals over the rows a
    keep-one-per-group dedup would remove (group size - 1, summed).
    """
    pairs = pq.read_table(corpus / "planted_pairs.parquet", columns=["id_a", "id_b"])
    members = pa.concat_arrays([pairs["id_a"].combine_chunks(), pairs["id_b"].combine_chunks()])
    ends = pa.concat_arrays([pairs["id_b"].combine_chunks(), pairs["id_a"].combine_chunks()])
    # Group id of each planted doc: the smallest id it is paired with (itself included).
    table = pa.table({"id": members, "other": ends}).group_by("id").aggregate(
        [("other", "min")])
    group = pc.min_element_wise(table["id"], table["other_min"])
    group_of = dict(zip(table["id"].to_pylist(), group.to_pylist(), strict=True))
    removable = len(group_of) - len(set(group_of.values()))
    same = [group_of.get(a) is not None and group_of.get(a) == group_of.get(b)
            for a, b in zip(dropped["id"].to_pylist(), dropped["detail"].to_pylist(),
                            strict=True)]
    planted = int(sum(same))
    return {"planted_removable": removable, "removed_planted": planted,
            "removed_other": len(same) - planted,
            "planted_recall": round(planted / removable, 4) if removable else None}


def step_figures(out: Path, env: dict, cwd: Path) -> dict:
    ops = stats(out, "SELECT step, op, name, rows_in, rows_out, rows_dropped, seconds, "
                "metrics FROM ops ORDER BY step", env, cwd).to_pylist()
    for row in ops:
        row["metrics"] = json.loads(row["metrics"]) if row.get("metrics") else None
    fitted = stats(out, "SELECT step, name, count(*) AS rows, max(len(value)) AS dim "
                   "FROM fitted GROUP BY ALL", env, cwd).to_pylist()
    dropped = stats(out, "SELECT id, detail FROM dropped WHERE reason = 'semantic_duplicate'",
                    env, cwd)
    return {"ops": ops, "fitted": fitted, "dropped": dropped}


# --------------------------------------------------------------------------------------


def run_one(n: int, a: argparse.Namespace, src: Path) -> dict:
    corpus = ensure_corpus(n)
    work = ROOT / "work" / str(n)
    out = work / "out"
    if out.exists():  # only ever our own earlier output of this benchmark
        subprocess.run(["rm", "-rf", str(out)], check=True)
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE.format(inp=corpus / "part-*.parquet", out=out, cpus=a.num_cpus,
                                    store=a.object_store_mb, conc=a.concurrency, eps=a.eps))
    cmd = [str(CURATE), "run", str(recipe)]
    env = {"PYTHONPATH": str(src), "RAY_AUTH_MODE": "disabled"}
    print(f"[{time.strftime('%H:%M:%S')}] N={n:,}: {' '.join(cmd)} (code {src.name}, "
          f"load {os.getloadavg()[0]:.2f})", flush=True)
    m = run_measured(cmd, env, src, work / "curate.log", a.timeout)
    manifest = json.loads((corpus / "manifest.json").read_text())
    row = {"docs": n, "chars": manifest["chars"], "commit": src.name,
           "settings": {"num_cpus": a.num_cpus, "object_store_mb": a.object_store_mb,
                        "concurrency": a.concurrency}, **m,
           "docs_per_s": round(n / m["wall_s"], 1),
           "docs_per_s_per_core": round(n / m["wall_s"] / a.num_cpus, 1),
           "docs_per_cpu_s": round(n / m["cpu_s"], 1) if m["cpu_s"] else None}
    if m["rc"] != 0:
        row["error"] = (work / "curate.log").read_text()[-4000:]
        print(f"  FAILED rc={m['rc']} after {m['wall_s']} s (log {work / 'curate.log'})",
              flush=True)
        return row
    figures = step_figures(out, env, src)
    row.update(ops=figures["ops"], fitted=figures["fitted"],
               **planted_scores(corpus, figures["dropped"]))
    print("  " + json.dumps({k: v for k, v in row.items() if k not in ("timeline", "ops")}),
          flush=True)
    return row


def _semantic(r: dict) -> dict:
    return next((o for o in r.get("ops", []) if o["op"] == SEMANTIC), {})


def _title_cpu(r: dict, prefix: str) -> float:
    return sum(v["cpu_s"] for k, v in r["cpu_by_title"].items() if k.startswith(prefix))


def _embed_cpu(r: dict) -> float:
    return _title_cpu(r, "ray::MapWorker")


def _driver_cpu(r: dict) -> float:
    return _title_cpu(r, "curate driver")


def _step_wall(r: dict, step: str) -> str:
    w = r.get("funnel", {}).get(step)
    return f"{w['wall_s']:.0f}" if w else "-"


def table(runs: list[dict]) -> str:
    """Markdown table of the runs, then the growth between consecutive succeeded sizes.
    CPU figures are from /proc (`ops.seconds` is wall time inside the step functions)."""
    cols = ["docs", "wall s", "docs/s", "embed wall s", "semantic wall s", "CPU s (tree)",
            "docs/CPU-s", "embed CPU s", "driver CPU s", "peak RSS MB", "peak PSS MB",
            "peak USS MB", "store MB", "spilled MB", "K", "pairs compared", "removed",
            "planted recall", "load before/mean/after"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in runs:
        met = _semantic(r).get("metrics") or {}
        k = next((f["rows"] for f in r.get("fitted", []) if f["name"] == "centroids"), "-")
        wall = f"{r['wall_s']:.0f}" + ("" if r["rc"] == 0 else f" (stopped, rc {r['rc']})")
        cells = [f"{r['docs']:,}", wall, f"{r['docs_per_s']:,.0f}" if r["rc"] == 0 else "-",
                 _step_wall(r, "1"), _step_wall(r, "2"), f"{r['cpu_s']:.0f}",
                 f"{r['docs_per_cpu_s']:,.0f}" if r["rc"] == 0 else "-",
                 f"{_embed_cpu(r):.0f}", f"{_driver_cpu(r):.0f}", f"{r['peak_rss_mb']:,}",
                 f"{r['peak_pss_mb']:,}", f"{r['peak_uss_mb']:,}",
                 f"{r['object_store_allocated_peak_mb']:,}", f"{r['spilled_peak_mb']:,}",
                 str(k), f"{met['pairs_compared']:,}" if met else "-",
                 f"{met['removed']:,}" if met else "-", str(r.get("planted_recall", "-")),
                 f"{r['uptime_before'][0]}/{r['load1_mean']}/{r['uptime_after'][0]}"]
        lines.append("| " + " | ".join(cells) + " |")
    ok = sorted((r for r in runs if r["rc"] == 0), key=lambda r: r["docs"])
    spans = list(zip(ok, ok[1:], strict=False)) + ([(ok[0], ok[-1])] if len(ok) > 2 else [])
    for lo, hi in spans:  # consecutive sizes, then smallest to largest
        def x(f, lo=lo, hi=hi) -> str:
            return f"x{f(hi) / max(f(lo), 1e-9):.2f}"

        pairs = lambda r: _semantic(r)["metrics"]["pairs_compared"]  # noqa: E731
        lines.append(
            f"\n{lo['docs']:,} -> {hi['docs']:,} docs (x{hi['docs'] / lo['docs']:g}): "
            f"wall {x(lambda r: r['wall_s'])}, CPU {x(lambda r: r['cpu_s'])}, "
            f"embed CPU {x(_embed_cpu)}, driver CPU {x(_driver_cpu)}, pairs {x(pairs)}, "
            f"peak RSS {x(lambda r: r['peak_rss_mb'])}, "
            f"peak PSS {x(lambda r: r['peak_pss_mb'])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, help="document counts, e.g. 100000 1000000")
    ap.add_argument("--num-cpus", type=int, default=2, help="embedded Ray's CPUs")
    ap.add_argument("--object-store-mb", type=int, default=2048)
    ap.add_argument("--concurrency", type=int, default=2, help="actors/tasks per step")
    ap.add_argument("--timeout", type=float, help="seconds before a run is killed")
    ap.add_argument("--eps", type=float, default=0.02, help="dedup.semantic's eps: 0.02 "
                    "suits static vectors (benchmarks/semantic.md); the default 0.15 is "
                    "for all-MiniLM-L6-v2's own")
    ap.add_argument("--commit", default="HEAD", help="the committed code to run (so that "
                    "runs at several sizes can share one commit while others commit)")
    ap.add_argument("--table", action="store_true", help="print the saved results")
    a = ap.parse_args()
    if a.sizes:
        src = snapshot(a.commit)
        for n in a.sizes:
            row = run_one(n, a, src)
            row["machine"] = {"cpus": os.cpu_count(),
                              "mem_gb": round(os.sysconf("SC_PAGE_SIZE")
                                              * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
            save(row)
    print(table(load()))


def load() -> list[dict]:
    return json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []


def save(row: dict) -> None:
    """Replace the saved run of this size (read just before writing: two invocations of
    this script at different sizes may run side by side)."""
    runs = {r["docs"]: r for r in load()} | {row["docs"]: row}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"runs": [runs[k] for k in sorted(runs)]}, indent=1))
    tmp.replace(RESULTS)


if __name__ == "__main__":
    main()
