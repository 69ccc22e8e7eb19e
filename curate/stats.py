"""DuckDB views over a run folder's stats tables, queried in a read-only sandbox.

Views (see docs/stats.md):
  runs, ops, signals, dropped, removed, fitted
                                           the latest succeeded run of each recipe name
  all_runs, all_ops, all_signals, all_dropped, all_removed, all_fitted
                                           every run directory in OUT, failed and
                                           unfinished (killed) runs included

The sandbox: one SELECT (or EXPLAIN [ANALYZE] of one SELECT) per query; DuckDB may open
only the stats files the views read (no other file, no network, no extensions, no spill
files); the configuration is locked; memory, threads and wall time are limited.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.tables import STATS_TABLES

# Derived views (docs/stats.md, "Contamination"), each also as all_<name>.
DERIVED = ("benchmark_items", "contamination")
VIEWS = [*STATS_TABLES, *(f"all_{t}" for t in STATS_TABLES), *DERIVED,
         *(f"all_{t}" for t in DERIVED)]
# What a decontam step's `items` fit stage records (pipelines.fitted names it).
ITEMS_FILES = "fitted/step-*-items.table.parquet"
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class StatsError(ValueError):
    """A stats query that cannot be answered: no runs, a refused statement, a limit hit."""


@dataclass(frozen=True)
class Limits:
    """Resources one stats query may use."""

    memory: str = "1GB"    # DuckDB's memory_limit; also caps the size of the result
    threads: int = 2
    timeout: float = 60.0  # seconds of wall time, then the query is interrupted

    def memory_bytes(self) -> int:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", self.memory)
        unit = (m.group(2).lower() or "b") if m else ""
        if not m or unit not in _UNITS or float(m.group(1)) <= 0:
            raise StatsError(f"memory limit {self.memory!r} is not a size like 512MB or 2GB")
        return int(float(m.group(1)) * _UNITS[unit])


def latest_succeeded(run_dirs: list[Path]) -> list[Path]:
    """The run directory of the latest succeeded run (by `finished`) of each recipe name.

    Directories without runs.parquet (a run still going, or killed) are never chosen.
    """
    best: dict[str, tuple[object, str, Path]] = {}
    for d in run_dirs:
        f = layout.runs_file(d)
        if not f.is_file():
            continue
        try:
            rows = pq.read_table(f, columns=["recipe", "status", "finished"]).to_pylist()
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise StatsError(f"cannot read {f}: {exc}") from None
        for r in rows:
            if r["status"] != "succeeded" or r["finished"] is None:
                continue
            key = (r["finished"], d.name)  # run ids start with a timestamp: a fair tie-break
            if r["recipe"] not in best or key > best[r["recipe"]][:2]:
                best[r["recipe"]] = (*key, d)
    return sorted(v[2] for v in best.values())


def _files(run_dirs: list[Path], pattern: str) -> list[str]:
    return sorted(p.as_posix() for d in run_dirs for p in d.glob(pattern) if p.is_file())


def _view_sql(name: str, files: list[str]) -> str:
    # The table's columns first, from an empty typed row set: the view has every column
    # even with no file yet, or with only files older than a column (an ops file written
    # before the token columns existed reads them as null).
    types = duckdb.connect().from_arrow(STATS_TABLES[name.removeprefix("all_")].empty_table())
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in zip(
        types.columns, types.types, strict=True))
    empty = f"SELECT {cols} WHERE false"
    if not files:
        return f"CREATE VIEW {name} AS {empty}"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return (f"CREATE VIEW {name} AS {empty} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet([{listed}], union_by_name=true)")


_ITEMS_COLUMNS = ("CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS SMALLINT) AS step, "
                  "CAST(NULL AS VARCHAR) AS benchmark, CAST(NULL AS VARCHAR) AS item_id, "
                  "CAST(NULL AS VARCHAR) AS file, CAST(NULL AS BIGINT) AS row")


def _items_files(run_dirs: list[Path]) -> list[str]:
    """The recorded item tables that have the columns the view reads (a file written by
    something else under OUT is left out rather than breaking every query)."""
    need = {"benchmark", "item_id", "file", "row"}
    good = []
    for f in _files(run_dirs, ITEMS_FILES):
        try:
            if need <= set(pq.read_schema(f).names):
                good.append(f)
        except (OSError, pa.ArrowException):
            continue
    return good


def _items_view_sql(name: str, files: list[str]) -> str:
    """benchmark_items(run_id, step, benchmark, item_id, file, row): the items each
    decontam step checked, from its recorded `items` fit table (run and step from the
    file's path: RUN_ID/fitted/step-NNN-items.table.parquet)."""
    empty = f"SELECT {_ITEMS_COLUMNS} WHERE false"
    if not files:
        return f"CREATE VIEW {name} AS {empty}"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    path = "replace(filename, '\\', '/')"
    return (f"CREATE VIEW {name} AS {empty} UNION ALL BY NAME SELECT "
            f"regexp_extract({path}, '([^/]+)/fitted/[^/]+$', 1) AS run_id, "
            f"CAST(regexp_extract({path}, 'step-([0-9]+)-items', 1) AS SMALLINT) AS step, "
            "CAST(benchmark AS VARCHAR) AS benchmark, CAST(item_id AS VARCHAR) AS item_id, "
            "CAST(file AS VARCHAR) AS file, CAST(row AS BIGINT) AS row "
            f"FROM read_parquet([{listed}], filename=true)")


def _contamination_view_sql(prefix: str) -> str:
    """contamination: one row per row a decontam step flagged, its signals pivoted, and
    whether that step dropped it (`action: drop`) or kept it (`annotate`)."""
    def pick(key: str, col: str) -> str:
        return f"max(s.{col}) FILTER (WHERE s.key = '{key}')"
    return (f"CREATE VIEW {prefix}contamination AS SELECT s.run_id, s.step, s.name, s.op, "
            f"s.id, {pick('benchmark', 'text')} AS benchmark, "
            f"{pick('matched_id', 'text')} AS matched_id, {pick('method', 'text')} AS method, "
            f"{pick('score', 'num')} AS score, "
            f"CAST({pick('span_start', 'num')} AS BIGINT) AS span_start, "
            f"CAST({pick('span_end', 'num')} AS BIGINT) AS span_end, "
            f"bool_or(d.id IS NOT NULL) AS dropped "
            f"FROM {prefix}signals s LEFT JOIN {prefix}dropped d ON d.run_id = s.run_id "
            "AND d.step = s.step AND d.id = s.id "
            "WHERE s.op LIKE 'decontam.%' GROUP BY s.run_id, s.step, s.name, s.op, s.id "
            "HAVING count(*) FILTER (WHERE s.key = 'method') > 0")


def connect(out: str | Path, limits: Limits = Limits()) -> duckdb.DuckDBPyConnection:
    """A sandboxed in-memory DuckDB with the views over the runs under `out`.

    DuckDB may open only the stats files the views read; every other path, the network
    and extensions are refused, and the configuration is locked before it is returned.
    """
    runs = layout.runs_dir(Path(out).resolve())
    if not runs.is_dir():
        raise StatsError(f"{out} holds no curate runs (no {runs}); run a recipe into it first")
    limits.memory_bytes()  # a clear error for a malformed size before DuckDB's own
    if limits.threads < 1 or limits.timeout <= 0:
        raise StatsError("--threads must be at least 1 and --timeout above 0")
    every = sorted(d for d in runs.iterdir() if d.is_dir())
    scopes = {"": latest_succeeded(every), "all_": every}
    views = {f"{prefix}{t}": _files(dirs, pattern)
             for prefix, dirs in scopes.items() for t, pattern in layout.RUN_TABLES.items()}
    items = {prefix: _items_files(dirs) for prefix, dirs in scopes.items()}
    try:
        con = duckdb.connect(":memory:", config={
            "memory_limit": limits.memory, "threads": limits.threads,
            "temp_directory": "",  # no spill files: a query over the limit fails instead
            "autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "allow_community_extensions": False, "allow_unsigned_extensions": False,
            "allow_extension_repositories": "forbidden", "allow_persistent_secrets": False,
            "python_enable_replacements": False,  # no reading the caller's Python variables
        })
    except duckdb.Error as exc:
        raise StatsError(f"bad limit: {_one_line(exc)}") from None
    try:
        # allowed_paths can only be set on a running database, and before access is closed.
        allowed = {f for fs in [*views.values(), *items.values()] for f in fs}
        con.execute("SET allowed_paths = ?", [sorted(allowed)])
        con.execute("SET enable_external_access = false")
        con.execute("SET enable_progress_bar = false")  # stdout carries the results
        for name, files in views.items():
            con.execute(_view_sql(name, files))
        for prefix, files in items.items():
            con.execute(_items_view_sql(f"{prefix}benchmark_items", files))
            con.execute(_contamination_view_sql(prefix))
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:  # e.g. a stats file that is not Parquet
        con.close()
        raise StatsError(f"cannot open the stats of {out}: {_one_line(exc)}") from None
    return con


def check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT, or EXPLAIN [ANALYZE] of one SELECT."""
    statements = _parse(con, sql)
    if len(statements) != 1:
        raise StatsError(f"give exactly one SQL statement (got {len(statements)})")
    st = statements[0]
    if st.type is duckdb.StatementType.EXPLAIN:
        inner = _parse(con, _after_explain(st.query))
        if len(inner) == 1 and inner[0].type is duckdb.StatementType.SELECT:
            return
        kind = inner[0].type.name if inner else "empty"
        raise StatsError(f"stats are read-only: EXPLAIN of {kind} is refused; "
                         "EXPLAIN [ANALYZE] works on one SELECT")
    if st.type is not duckdb.StatementType.SELECT:
        raise StatsError(f"stats are read-only: {st.type.name} statements are refused; "
                         "use SELECT (export with --format csv|json|parquet --to FILE)")


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    try:
        return con.extract_statements(sql)
    except duckdb.Error as exc:
        raise StatsError(f"cannot parse query: {_one_line(exc)}") from None


def _after_explain(text: str) -> str:
    """The statement an EXPLAIN [ANALYZE] statement explains (it is checked in turn)."""
    found = duckdb.tokenize(text)
    ends = [pos for pos, _ in found[1:]] + [len(text)]
    tokens = [(pos, text[pos:end].strip()) for (pos, kind), end in zip(found, ends, strict=True)
              if kind is not duckdb.token_type.comment]
    if tokens and tokens[0][1].upper() == "EXPLAIN":
        tokens = tokens[1:]
    if tokens and tokens[0][1].upper() in ("ANALYZE", "ANALYSE"):
        tokens = tokens[1:]
    if tokens and tokens[0][1] == "(":
        raise StatsError("EXPLAIN (options) is not supported; use EXPLAIN or EXPLAIN ANALYZE")
    return text[tokens[0][0]:] if tokens else ""


def _one_line(exc: BaseException) -> str:
    """DuckDB's message without its multi-line caret display."""
    lines = []
    for line in str(exc).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def query(out: str | Path, sql: str, limits: Limits = Limits()) -> pa.Table:
    """Run one read-only statement against the views of `out` within `limits`."""
    con = connect(out, limits)
    try:
        return execute(con, sql, limits)
    finally:
        con.close()


def execute(con: duckdb.DuckDBPyConnection, sql: str, limits: Limits = Limits()) -> pa.Table:
    """Check `sql` (see `check`) and run it on a `connect`ed sandbox within `limits`."""
    check(con, sql)
    # The Arrow result lives outside DuckDB's memory limit, so its size is capped here.
    cap = limits.memory_bytes()
    timer = threading.Timer(limits.timeout, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        reader = con.sql(sql).to_arrow_reader(64 * 1024)
        batches, size = [], 0
        for batch in reader:
            size += batch.nbytes
            if size > cap:
                raise StatsError(f"the result is larger than the memory limit ({limits.memory}, "
                                 "--memory-limit); aggregate, or add LIMIT")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        raise StatsError(f"query stopped after the {limits.timeout:g} s timeout (--timeout)"
                         ) from None
    except duckdb.OutOfMemoryException as exc:
        raise StatsError(f"query stopped at the memory limit ({limits.memory}, --memory-limit): "
                         f"{_one_line(exc)}") from None
    except duckdb.PermissionException as exc:
        raise StatsError(f"refused: {_one_line(exc)}: stats queries read only the views "
                         f"({', '.join(VIEWS)})") from None
    except duckdb.Error as exc:
        raise StatsError(f"{_one_line(exc)} (views: {', '.join(VIEWS)})") from None
    finally:
        timer.cancel()
