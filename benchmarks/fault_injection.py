"""Fault injection: run `curate` into harm's way and list what the user owned, before and
after. Writes a Markdown report (default docs/fault-injection.md).

    .venv/bin/python benchmarks/fault_injection.py [--report docs/fault-injection.md]

Scenarios: output = input folder, foreign files in OUT, disk full (a 2 MB tmpfs as OUT;
needs root, skipped otherwise), kill -9 while the output is being written (in process and
on Ray), a corrupt shard. For each, every file of the input folder and of OUT is listed
with its size and a hash, and the script checks that no file the user owned (the input,
files placed in OUT by hand, the previous run's published output) changed or disappeared.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).parent / "curate")
QUICKSTART = sorted((REPO / "data" / "quickstart").glob("*.parquet"))
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200"}


def listing(folder: Path) -> dict[str, tuple[int, str]]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): (p.stat().st_size,
                                               hashlib.sha256(p.read_bytes()).hexdigest()[:12])
            for p in sorted(folder.rglob("*")) if p.is_file()}


def user_view(files: dict) -> dict:
    """What the user sees as theirs in OUT: everything outside curate's `_curate/`."""
    return {k: v for k, v in files.items() if not k.startswith("_curate/")}


def curate(*args: str, wait: bool = True):
    argv = [CURATE, *args]
    if not wait:
        return subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def run_into(inp: str, out: Path, *extra: str):
    return curate("run", "recipes/quickstart.yaml", "--input", inp, "--output", str(out),
                  "--set", "execution.num_cpus=2", *extra)


def error_line(res) -> str:
    lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    return lines[-1] if lines else "(no error line)"


def _cell(entry: tuple[int, str] | None) -> str:
    return f"{entry[0]:,} B `{entry[1]}`" if entry else "-"


class Report:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.ok = True

    def scenario(self, title: str, what: str, res, folders: dict[str, tuple[dict, dict]],
                 kept: dict[str, bool]) -> None:
        self.parts.append(f"## {title}\n\n{what}\n")
        if res is not None:
            self.parts.append(f"exit code {res.returncode}; stderr's error line:\n\n"
                              f"    {error_line(res) if res.returncode else '(none: succeeded)'}\n")
        for name, (before, after) in folders.items():
            self.parts.append(f"**{name}** before -> after:\n\n| file | before | after |\n"
                              "|---|---|---|")
            shown_b, shown_a = user_view(before), user_view(after)
            for f in sorted(set(shown_b) | set(shown_a)):
                self.parts.append(f"| `{f}` | {_cell(shown_b.get(f))} | {_cell(shown_a.get(f))} |")
            internal = (len(before) - len(shown_b), len(after) - len(shown_a))
            if any(internal):
                self.parts.append(f"| curate's own files under `_curate/` | {internal[0]} files "
                                  f"| {internal[1]} files |")
            self.parts.append("")
        for claim, holds in kept.items():
            self.ok &= holds
            self.parts.append(f"- {'PASS' if holds else 'FAIL'}: {claim}")
        self.parts.append("")
        print(f"{title}: " + ", ".join(f"{'PASS' if v else 'FAIL'} {k}" for k, v in kept.items()),
              flush=True)


def copy_of_quickstart(folder: Path) -> Path:
    folder.mkdir()
    for shard in QUICKSTART:
        shutil.copy(shard, folder)
    return folder


def output_is_input(tmp: Path, report: Report) -> None:
    folder = copy_of_quickstart(tmp / "x")
    before = listing(folder)
    res = run_into(f"{folder}/*.parquet", folder)
    after = listing(folder)
    report.scenario("Output folder = input folder",
                    f"`curate run recipes/quickstart.yaml --input '{folder}/*.parquet' "
                    f"--output {folder}`", res, {"input = OUT": (before, after)},
                    {"refused before compute": res.returncode != 0,
                     "every input file unchanged, nothing added": before == after})


def foreign_files(tmp: Path, report: Report) -> None:
    out = tmp / "foreign"
    out.mkdir()
    (out / "part-important.parquet").write_bytes(os.urandom(2048))
    (out / "notes.txt").write_text("mine")
    before = listing(out)
    res = run_into(str(REPO / "data/quickstart/*.parquet"), out)
    after = listing(out)
    report.scenario("Foreign files in OUT", f"OUT holds `part-important.parquet` and "
                    f"`notes.txt`; `curate run recipes/quickstart.yaml --output {out}`", res,
                    {"OUT": (before, after)},
                    {"refused before compute": res.returncode != 0,
                     "the user's files unchanged, nothing added": before == after})


def disk_full(tmp: Path, report: Report) -> None:
    out = tmp / "small-disk"
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)],
                             capture_output=True).returncode == 0
    if not mounted:
        report.parts.append("## Disk full\n\nskipped: mounting a tmpfs needs root\n")
        print("disk full: skipped (no mount)")
        return
    try:
        small = tmp / "small-input"
        small.mkdir()
        shutil.copy(QUICKSTART[0], small)
        first = run_into(f"{small}/*.parquet", out)
        before, inp_before = listing(out), listing(REPO / "data" / "quickstart")
        res = run_into(str(REPO / "data/quickstart/*.parquet"), out)
        after, inp_after = listing(out), listing(REPO / "data" / "quickstart")
        report.scenario(
            "Disk full", f"OUT is a 2 MB tmpfs holding a first run's output (1 shard, exit "
            f"{first.returncode}); a second run of all 4 quickstart shards does not fit",
            res, {"OUT": (before, after), "input": (inp_before, inp_after)},
            {"the second run fails": res.returncode != 0,
             "the error names the cause": "No space left" in error_line(res),
             "the first run's published output unchanged":
                 user_view(before) == user_view(after) and bool(user_view(before)),
             "input unchanged": inp_before == inp_after})
    finally:
        subprocess.run(["umount", str(out)], check=False)


def kill_mid_write(tmp: Path, report: Report, engine: str) -> None:
    out = tmp / f"killed-{engine}"
    first = run_into(f"{REPO}/data/quickstart/part-0000[0-1].parquet", out)
    before = listing(out)
    proc = run_into_background(out, engine)
    deadline, seen = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None:
        if list(out.glob("_curate/runs/*/staging/part-*.parquet")):
            seen = True
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    during = listing(out)
    rerun = run_into(str(REPO / "data/quickstart/*.parquet"), out,
                     "--set", f"execution.engine={engine}")
    after = listing(out)
    report.scenario(
        f"kill -9 while output shards are written (engine: {engine})",
        f"OUT holds a first run's output (2 shards, exit {first.returncode}); a run of all 4 "
        f"shards with `execution.engine={engine}` is killed (SIGKILL to its process group, "
        f"Ray's processes included) as soon as its first staged shard exists (seen: {seen}); "
        "then the same command is rerun", rerun,
        {"OUT before the kill -> after the kill": (before, during),
         "OUT after the kill -> after the rerun": (during, after)},
        {"the killed run published nothing: OUT's shards are the first run's":
             user_view(before) == user_view(during),
         "the rerun succeeds": rerun.returncode == 0,
         "after the rerun OUT holds exactly the new run's 4 shards":
             sorted(user_view(after)) == [f"part-0000{i}-0000.parquet" for i in range(4)]})


def run_into_background(out: Path, engine: str):
    return curate("run", "recipes/quickstart.yaml", "--output", str(out),
                  "--set", "execution.num_cpus=2", "--set", f"execution.engine={engine}",
                  wait=False)


def corrupt_shard(tmp: Path, report: Report) -> None:
    folder = copy_of_quickstart(tmp / "corrupt-input")
    data = bytearray((folder / QUICKSTART[1].name).read_bytes())
    start = len(data) // 3
    data[start:start + 2000] = b"U" * 2000  # a data page; the footer still reads
    (folder / QUICKSTART[1].name).write_bytes(bytes(data))
    out = tmp / "corrupt-out"
    first = run_into(f"{REPO}/data/quickstart/*.parquet", out)
    before, inp_before = listing(out), listing(folder)
    res = run_into(f"{folder}/*.parquet", out)
    after, inp_after = listing(out), listing(folder)
    report.scenario(
        "Corrupt shard", f"OUT holds a good run's output (exit {first.returncode}); the next "
        f"run reads a copy of the quickstart whose `{QUICKSTART[1].name}` has 2,000 bytes "
        "overwritten in a data page", res, {"OUT": (before, after), "input": (inp_before,
                                                                               inp_after)},
        {"the run fails with one line naming the shard": res.returncode != 0
             and QUICKSTART[1].name in error_line(res) and "\x1b[" not in res.stderr,
         "the previous output unchanged": user_view(before) == user_view(after),
         "input unchanged": inp_before == inp_after})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default=str(REPO / "docs" / "fault-injection.md"))
    args = parser.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="curate-faults-") as tmp:
        for scenario in (output_is_input, foreign_files, disk_full,
                         partial(kill_mid_write, engine="inprocess"),
                         partial(kill_mid_write, engine="ray"), corrupt_shard):
            scenario(Path(tmp), report)
    head = ("# Fault injection: nothing the user owned is lost\n\n"
            f"Produced by `.venv/bin/python benchmarks/fault_injection.py` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Hashes are the first 12 "
            "hex digits of SHA-256. Paths under a temporary folder.\n\n"
            f"Overall: {'every check passed' if report.ok else 'SOME CHECKS FAILED'}.\n")
    Path(args.report).write_text(head + "\n" + "\n".join(report.parts))
    print(f"wrote {args.report}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
