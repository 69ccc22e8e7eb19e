"""What `curate report` shows, gathered with DuckDB aggregates over the stats views.

Every figure is a SQL aggregate (histograms are binned in SQL), so the report of a 1M-row
run reads only the stats Parquet and a handful of sample rows: the corpus and the signals
never sit in Python memory. The views come from `curate.stats.connect` (read-only, the
sandbox); the few kept texts come from the run's published shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from curate.report_thresholds import StepInfo, Threshold, recipe_steps, thresholds
from curate.stats import StatsError, connect
from pipelines import layout
from pipelines.errors import OutputError
from pipelines.publish import owned_files

BINS = 30
EXCERPT_CHARS = 280
SAMPLES_PER_REASON = 3
KEPT_SAMPLES = 3
CLUSTERS_SHOWN = 3
MEMBERS_SHOWN = 4
TOP_TEXT_VALUES = 8
# ops columns Engineer A's token counting adds; shown when the run has them.
TOKEN_COLUMNS = ("tokens_in", "tokens_out", "bytes_out", "words_out")


class ReportError(ValueError):
    """A report that cannot be made: no such run, OUT not a curate output folder."""


@dataclass
class Histogram:
    """Counts of one numeric signal of one step in `len(kept)` equal bins over [lo, hi]."""

    step: int
    name: str
    key: str
    lo: float
    hi: float
    kept: list[int]
    dropped: list[int]
    above: int  # values over `hi`, counted in the last bin (a long tail is cut there)
    max: float
    thresholds: list[Threshold]


@dataclass
class Doc:
    """A sample document: its id, an excerpt (None when its text was not kept), notes."""

    id: str
    excerpt: str | None
    detail: str | None = None
    signals: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cluster:
    """A group of duplicates: the row a dedup step kept and some of the rows it removed."""

    kept: Doc
    size: int
    removed: list[Doc]


@dataclass
class DedupStep:
    step: int
    name: str
    sizes: list[tuple[int, int]]  # (cluster size, clusters of that size)
    clusters: list[Cluster]


@dataclass
class ContaminationStep:
    """A decontam step: per benchmark, items checked and leaked; the most-leaked items."""

    step: int
    name: str
    op: str
    benchmarks: list[dict[str, Any]]  # benchmark, items, items_leaked, rows_flagged, ...
    leaked: list[dict[str, Any]]      # benchmark, item_id, rows, methods, score
    more: int                         # leaked items not listed


@dataclass
class RunReport:
    """Everything the report shows of one run."""

    run: dict[str, Any]
    ops: list[dict[str, Any]]
    drops: list[dict[str, Any]]  # step, name, reason, rows
    histograms: list[Histogram]
    text_tops: list[tuple[int, str, str, list[tuple[str, int]]]]  # step, name, key, values
    dedup: list[DedupStep]
    dropped_samples: dict[tuple[int, str], list[Doc]]
    kept_samples: list[Doc]
    has_removed_texts: bool
    kept_source: str  # where kept excerpts came from, or why there are none
    steps: list[StepInfo] = field(default_factory=list)  # the recorded recipe's steps
    contamination: list[ContaminationStep] = field(default_factory=list)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    try:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except duckdb.Error as exc:
        raise ReportError(f"stats query failed: {exc}") from None


def open_stats(out: Path) -> duckdb.DuckDBPyConnection:
    """The read-only stats views of OUT, or a ReportError saying why OUT has none."""
    if not layout.runs_dir(out).is_dir():
        raise ReportError(f"{out} is not a curate output folder (no {layout.runs_dir(out)}); "
                          "give the output.path a recipe ran into")
    try:
        return connect(out)
    except StatsError as exc:
        raise ReportError(str(exc)) from None


def resolve_run(con: duckdb.DuckDBPyConnection, out: Path, run: str | None) -> str:
    """The run id to report: `run` if OUT has a record of it, else the latest succeeded."""
    known = [r["run_id"] for r in _rows(
        con, "SELECT run_id FROM all_runs ORDER BY finished DESC, run_id DESC", [])]
    if run is None:
        latest = _rows(con, "SELECT run_id FROM runs ORDER BY finished DESC, run_id DESC "
                       "LIMIT 1", [])
        if not latest:
            raise ReportError(f"{out} has no succeeded run; give --run RUN (recorded: "
                              f"{', '.join(known) or 'none'})")
        return latest[0]["run_id"]
    if run in known:
        return run
    if (layout.runs_dir(out) / run).is_dir():
        raise ReportError(f"run {run} in {out} has no record yet (still running, or killed)")
    listed = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
    raise ReportError(f"no run {run} in {out} (recorded runs, newest first: {listed or 'none'})")


def _has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(_rows(con, "SELECT 1 FROM duckdb_views() WHERE view_name = ?", [name]))


def funnel(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """The run's `ops` rows in step order, token columns included when recorded."""
    rows = _rows(con, "SELECT * EXCLUDE (metrics) FROM all_ops WHERE run_id = ? ORDER BY step",
                 [run_id])
    return [{k: v for k, v in r.items() if k not in TOKEN_COLUMNS or v is not None}
            for r in rows]


def drops_by_reason(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    return _rows(con, """
        SELECT step, any_value(name) AS name, reason, count(*) AS rows
        FROM all_dropped WHERE run_id = ? GROUP BY step, reason ORDER BY step, rows DESC, reason
    """, [run_id])


def histograms(con: duckdb.DuckDBPyConnection, run_id: str,
               steps: list[StepInfo]) -> list[Histogram]:
    """One histogram per (step, numeric signal), kept vs dropped by that step, binned in SQL.

    The range is [min, max], or [min, p99] when the top 1% spans more than half of [min,
    max] (then the last bin also holds the values above p99); a threshold inside
    [min, max] always lies within the range drawn.
    """
    ranges = _rows(con, """
        SELECT step, any_value(name) AS name, key, min(num) AS lo, max(num) AS hi,
               quantile_cont(num, 0.99) AS p99
        FROM all_signals WHERE run_id = ? AND num IS NOT NULL AND isfinite(num)
        GROUP BY step, key ORDER BY step, key
    """, [run_id])
    if not ranges:
        return []
    chosen = []
    for r in ranges:
        info = steps[r["step"] - 1] if 0 < r["step"] <= len(steps) else None
        marks = thresholds(info).get(r["key"], []) if info else []
        hi = r["p99"] if (r["hi"] - r["lo"]) > 2 * (r["p99"] - r["lo"]) else r["hi"]
        hi = max([hi, *(t.value for t in marks if r["lo"] <= t.value <= r["hi"])])
        if hi <= r["lo"]:
            hi = r["lo"] + 1.0  # one value only: a unit-wide range around it
        chosen.append((r, float(hi), marks))
    bounds = ", ".join(f"({int(r['step'])}, '{_sql_str(r['key'])}', {float(r['lo'])!r}, "
                       f"{hi!r})" for r, hi, _ in chosen)
    counts = _rows(con, f"""
        WITH b(step, key, lo, hi) AS (VALUES {bounds}),
        s AS (SELECT step, key, id, num FROM all_signals
              WHERE run_id = ? AND num IS NOT NULL AND isfinite(num)),
        d AS (SELECT step, id FROM all_dropped WHERE run_id = ?)
        SELECT s.step, s.key,
               least({BINS - 1}, CAST(floor((s.num - b.lo) / (b.hi - b.lo) * {BINS}) AS INT))
                   AS bin,
               d.id IS NOT NULL AS dropped, count(*) AS n, count_if(s.num > b.hi) AS above
        FROM s JOIN b ON s.step = b.step AND s.key = b.key
        LEFT JOIN d ON d.step = s.step AND d.id = s.id
        GROUP BY ALL
    """, [run_id, run_id])
    grid: dict[tuple[int, str], Histogram] = {}
    for r, hi, marks in chosen:
        grid[(r["step"], r["key"])] = Histogram(
            r["step"], r["name"], r["key"], float(r["lo"]), hi, [0] * BINS, [0] * BINS, 0,
            float(r["hi"]), marks)
    for c in counts:
        h = grid[(c["step"], c["key"])]
        (h.dropped if c["dropped"] else h.kept)[c["bin"]] += c["n"]
        h.above += int(c["above"])
    return list(grid.values())


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def text_tops(con: duckdb.DuckDBPyConnection, run_id: str):
    """The most frequent values of each text signal with their exact counts.

    Candidates come from `approx_top_k` (a bounded sketch: a signal with a distinct value
    per row, such as a text hash, never builds a table of all its values), then are
    counted exactly. Values seen once are left out: the sketch's pick among them would
    depend on scheduling, and a list of singletons says nothing.
    """
    rows = _rows(con, f"""
        WITH s AS (SELECT step, name, key, text FROM all_signals
                   WHERE run_id = ? AND text IS NOT NULL),
        top AS (SELECT step, key, unnest(approx_top_k(text, {TOP_TEXT_VALUES})) AS text
                FROM s GROUP BY step, key)
        SELECT s.step, any_value(s.name) AS name, s.key, left(s.text, 80) AS value,
               count(*) AS n
        FROM s SEMI JOIN top ON s.step = top.step AND s.key = top.key AND s.text = top.text
        GROUP BY s.step, s.key, s.text
        HAVING count(*) > 1
        QUALIFY row_number() OVER (PARTITION BY s.step, s.key ORDER BY n DESC, s.text)
                <= {TOP_TEXT_VALUES}
        ORDER BY s.step, s.key, n DESC, s.text
    """, [run_id])
    tops: dict[tuple[int, str, str], list[tuple[str, int]]] = {}
    for r in rows:
        tops.setdefault((r["step"], r["name"], r["key"]), []).append((r["value"], r["n"]))
    return [(s, n, k, v) for (s, n, k), v in tops.items()]


def _excerpt_sql(column: str) -> str:
    return f"left({column}, {EXCERPT_CHARS})"


def dropped_samples(con: duckdb.DuckDBPyConnection, run_id: str, with_texts: bool
                    ) -> dict[tuple[int, str], list[Doc]]:
    """A few dropped rows per (step, reason), chosen by the md5 of their id (stable across
    runs and machines); rows whose text the run kept (`removed`) come first."""
    texts = ("(SELECT step, id, text FROM all_removed WHERE run_id = ?)" if with_texts else
             "(SELECT NULL::SMALLINT AS step, NULL AS id, NULL AS text WHERE ? IS NULL)")
    rows = _rows(con, f"""
        SELECT d.step, d.reason, d.id, d.detail, {_excerpt_sql("r.text")} AS excerpt
        FROM all_dropped d LEFT JOIN {texts} r ON r.step = d.step AND r.id = d.id
        WHERE d.run_id = ?
        QUALIFY row_number() OVER (PARTITION BY d.step, d.reason
                                   ORDER BY r.text IS NULL, md5(d.id), d.id)
                <= {SAMPLES_PER_REASON}
        ORDER BY d.step, d.reason, r.text IS NULL, md5(d.id), d.id
    """, [run_id, run_id])
    found: dict[tuple[int, str], list[Doc]] = {}
    for r in rows:
        found.setdefault((r["step"], r["reason"]), []).append(
            Doc(r["id"], r["excerpt"], r["detail"]))
    return found


def _signals_of(con: duckdb.DuckDBPyConnection, run_id: str, ids: list[str]
                ) -> dict[str, dict[str, Any]]:
    """Signals of a few rows: id -> 'step name.key' -> value."""
    if not ids:
        return {}
    rows = _rows(con, """
        SELECT id, step, name, key, coalesce(CAST(round(num, 4) AS VARCHAR), left(text, 40)) AS v
        FROM all_signals WHERE run_id = ? AND list_contains(?, id) ORDER BY step, key
    """, [run_id, ids])
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        found.setdefault(r["id"], {})[f"{r['step']}:{r['key']}"] = r["v"]
    return found


@dataclass(frozen=True)
class Output:
    """The published shards of a run, when they are the run's (the manifest names it)."""

    files: list[str]
    id_column: str | None
    text_column: str


def published_output(out: Path, run_id: str, recipe: dict[str, Any]) -> Output | str:
    """The run's published shards, or why kept texts cannot be shown."""
    manifest = layout.manifest_file(out)
    try:
        owner = json.loads(manifest.read_text()).get("run_id")
        files = sorted(str(out / f) for f in owned_files(out))
    except (OSError, ValueError, AttributeError, OutputError):
        return "no readable manifest of published shards"
    if owner != run_id:
        return f"OUT now holds the shards of run {owner}, not of this run"
    if not files:
        return "the run published no shards"
    source = recipe.get("input") or {}
    text_col = str(source.get("text_column") or "text")
    id_col = str(source.get("id_column") or "id")
    db = duckdb.connect(":memory:")
    try:
        names = db.execute("SELECT * FROM read_parquet(?) LIMIT 0", [files[:1]]).description
    except duckdb.Error as exc:
        return f"cannot read the published shards: {exc}"
    finally:
        db.close()
    names = [d[0] for d in names]
    if text_col not in names:
        return f"the published shards have no text column {text_col!r}"
    return Output(files, id_col if id_col in names else None, text_col)


def kept_samples(con: duckdb.DuckDBPyConnection, run_id: str, output: Output) -> list[Doc]:
    """A few published rows (md5 of the id, or the first rows when ids were generated)."""
    db = duckdb.connect(":memory:")
    try:
        text = _excerpt_sql(f'"{output.text_column}"')
        if output.id_column is None:
            rows = db.execute(f"SELECT NULL AS id, {text} AS excerpt FROM read_parquet(?) "
                              f"LIMIT {KEPT_SAMPLES}", [output.files]).fetchall()
        else:
            idc = f'CAST("{output.id_column}" AS VARCHAR)'
            rows = db.execute(f"SELECT {idc} AS id, {text} AS excerpt FROM read_parquet(?) "
                              f"ORDER BY md5({idc}), {idc} LIMIT {KEPT_SAMPLES}",
                              [output.files]).fetchall()
    finally:
        db.close()
    signals = _signals_of(con, run_id, [r[0] for r in rows if r[0] is not None])
    return [Doc(r[0] or "(generated id)", r[1], None, signals.get(r[0], {})) for r in rows]


def texts_by_id(con: duckdb.DuckDBPyConnection, run_id: str, ids: list[str],
                output: Output | str, with_removed: bool) -> dict[str, str]:
    """Excerpts of rows by id: removed texts of the run, then its published shards."""
    found: dict[str, str] = {}
    if not ids:
        return found
    if with_removed:
        for r in _rows(con, f"SELECT id, {_excerpt_sql('text')} AS t FROM all_removed "
                       "WHERE run_id = ? AND list_contains(?, id)", [run_id, ids]):
            found[r["id"]] = r["t"]
    missing = [i for i in ids if i not in found]
    if missing and isinstance(output, Output) and output.id_column is not None:
        idc = f'CAST("{output.id_column}" AS VARCHAR)'
        db = duckdb.connect(":memory:")
        try:
            found |= dict(db.execute(
                f"SELECT {idc}, {_excerpt_sql(chr(34) + output.text_column + chr(34))} "
                f"FROM read_parquet(?) WHERE list_contains(?, {idc})",
                [output.files, missing]).fetchall())
        finally:
            db.close()
    return found


def dedup_steps(con: duckdb.DuckDBPyConnection, run_id: str, ops: list[dict[str, Any]],
                output: Output | str, with_removed: bool) -> list[DedupStep]:
    """Per dedup step: cluster sizes (a kept row + the rows whose detail names it) and the
    largest few clusters, ties broken by the kept row's id."""
    found = []
    for op in ops:
        if not str(op["op"]).startswith("dedup."):
            continue
        step = op["step"]
        groups = """SELECT detail AS kept, count(*) + 1 AS size FROM all_dropped
                    WHERE run_id = ? AND step = ? AND detail IS NOT NULL GROUP BY detail"""
        sizes = _rows(con, f"SELECT size, count(*) AS clusters FROM ({groups}) "
                      "GROUP BY size ORDER BY size", [run_id, step])
        top = _rows(con, f"SELECT kept, size FROM ({groups}) ORDER BY size DESC, kept "
                    f"LIMIT {CLUSTERS_SHOWN}", [run_id, step])
        # Members whose text the run kept (in `removed`) come first: they can be shown.
        kept_text = ("(SELECT id FROM all_removed WHERE run_id = ? AND step = ?)"
                     if with_removed else "(SELECT NULL AS id WHERE ? IS NULL AND ? IS NULL)")
        members = _rows(con, f"""
            SELECT d.detail AS kept, d.id FROM all_dropped d
            LEFT JOIN {kept_text} r ON r.id = d.id
            WHERE d.run_id = ? AND d.step = ? AND list_contains(?, d.detail)
            QUALIFY row_number() OVER (PARTITION BY d.detail
                                       ORDER BY r.id IS NULL, md5(d.id), d.id) <= {MEMBERS_SHOWN}
            ORDER BY d.detail, r.id IS NULL, md5(d.id), d.id
        """, [run_id, step, run_id, step, [t["kept"] for t in top]])
        ids = [t["kept"] for t in top] + [m["id"] for m in members]
        texts = texts_by_id(con, run_id, ids, output, with_removed)
        clusters = [Cluster(Doc(t["kept"], texts.get(t["kept"])), t["size"],
                            [Doc(m["id"], texts.get(m["id"])) for m in members
                             if m["kept"] == t["kept"]]) for t in top]
        found.append(DedupStep(step, op["name"],
                               [(s["size"], s["clusters"]) for s in sizes], clusters))
    return found


LEAKED_SHOWN = 50


def contamination_steps(con: duckdb.DuckDBPyConnection, run_id: str,
                        ops: list[dict[str, Any]]) -> list[ContaminationStep]:
    """Per decontam step (the `all_contamination` and `all_benchmark_items` views): each
    benchmark's items, leaked items and flagged rows, and the most-leaked items."""
    if not _has_view(con, "all_contamination"):
        return []
    found = []
    for op in ops:
        if not str(op["op"]).startswith("decontam."):
            continue
        args = [run_id, op["step"]]
        benchmarks = _rows(con, """
            WITH items AS (SELECT benchmark, count(*) AS items FROM all_benchmark_items
                           WHERE run_id = ? AND step = ? GROUP BY 1),
            flagged AS (SELECT benchmark, count(*) AS rows_flagged,
                               count(DISTINCT matched_id) AS items_leaked,
                               count(*) FILTER (WHERE dropped) AS rows_dropped,
                               string_agg(DISTINCT method, ',' ORDER BY method) AS methods
                        FROM all_contamination WHERE run_id = ? AND step = ? GROUP BY 1)
            SELECT benchmark, coalesce(items, 0) AS items,
                   CASE WHEN methods = 'bloom' THEN NULL ELSE coalesce(items_leaked, 0) END
                   AS items_leaked, coalesce(rows_flagged, 0) AS rows_flagged,
                   coalesce(rows_dropped, 0) AS rows_dropped, methods
            FROM items FULL JOIN flagged USING (benchmark) ORDER BY benchmark
        """, args + args)
        leaked = _rows(con, f"""
            SELECT benchmark, matched_id AS item_id, count(*) AS rows,
                   string_agg(DISTINCT method, ',' ORDER BY method) AS methods,
                   max(score) AS score, count(*) OVER () AS total
            FROM all_contamination WHERE run_id = ? AND step = ? AND matched_id IS NOT NULL
            GROUP BY ALL ORDER BY rows DESC, score DESC, benchmark, item_id
            LIMIT {LEAKED_SHOWN}
        """, args)
        total = leaked[0]["total"] if leaked else 0
        found.append(ContaminationStep(op["step"], op["name"], op["op"], benchmarks,
                                       [{k: v for k, v in r.items() if k != "total"}
                                        for r in leaked], max(0, total - len(leaked))))
    return found


def gather(con: duckdb.DuckDBPyConnection, out: Path, run_id: str) -> RunReport:
    """All the report's figures for one run of OUT."""
    import yaml

    run = _rows(con, "SELECT * FROM all_runs WHERE run_id = ?", [run_id])[0]
    recipe_path = layout.recipe_file(layout.runs_dir(out) / run_id)
    steps = recipe_steps(recipe_path)
    try:
        recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        recipe = {}
    with_removed = _has_view(con, "all_removed") and bool(_rows(
        con, "SELECT 1 FROM all_removed WHERE run_id = ? LIMIT 1", [run_id]))
    ops = funnel(con, run_id)
    output = published_output(out, run_id, recipe if isinstance(recipe, dict) else {})
    kept = kept_samples(con, run_id, output) if isinstance(output, Output) else []
    return RunReport(
        run=run, ops=ops, drops=drops_by_reason(con, run_id),
        histograms=histograms(con, run_id, steps), text_tops=text_tops(con, run_id),
        dedup=dedup_steps(con, run_id, ops, output, with_removed),
        dropped_samples=dropped_samples(con, run_id, with_removed), kept_samples=kept,
        has_removed_texts=with_removed,
        kept_source="the published shards" if isinstance(output, Output) else output,
        steps=steps, contamination=contamination_steps(con, run_id, ops),
    )
