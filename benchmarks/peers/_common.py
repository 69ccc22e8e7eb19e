"""Shared bits of the peer driver scripts: reading the corpus, writing results.

Every driver writes OUT/dups.parquet with (id, kept_id): each row it removed as a near
duplicate and the row it kept instead, plus OUT/timing.json with its own stage timings
(process CPU seconds and wall seconds).
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORD = re.compile(r"\w+")


def option(name: str, default):
    """The command-line value after `name`, converted like `default`; else `default`."""
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def read_corpus(pattern: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of all Parquet shards matching `pattern`, in file then row order."""
    files = sorted(Path(pattern).parent.glob(Path(pattern).name))
    table = pa.concat_tables([pq.read_table(f, columns=["id", "text"]) for f in files])
    return table["id"].to_pylist(), table["text"].to_pylist()


def shingles(text: str, n: int = 5) -> list[str]:
    """Word 5-grams of `\\w+` tokens of the lower-cased text (the ground truth's rule)."""
    tok = WORD.findall(text.lower())
    if len(tok) < n:
        return [" ".join(tok)] if tok else []
    return [" ".join(tok[i:i + n]) for i in range(len(tok) - n + 1)]


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest index is the root


def write_dups(out: Path, ids: list[str], uf: UnionFind) -> int:
    """Keep the first row (input order) of every component; write the others."""
    dropped, kept = [], []
    for i in range(len(ids)):
        r = uf.find(i)
        if r != i:
            dropped.append(ids[i])
            kept.append(ids[r])
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(dropped, pa.string()),
                             "kept_id": pa.array(kept, pa.string())}), out / "dups.parquet")
    return len(dropped)


class Timer:
    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def stage(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        yield
        self.stages[name] = {"wall_s": round(time.perf_counter() - w, 3),
                             "cpu_s": round(time.process_time() - c, 3)}

    def write(self, out: Path, **extra) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "timing.json").write_text(json.dumps({"stages": self.stages, **extra}, indent=1))
