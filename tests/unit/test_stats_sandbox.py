"""Hostile `curate stats` queries: each is refused, or runs without doing harm."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.stats import Limits, StatsError, connect, execute
from tests.unit.test_stats_views import make_run

SECRET = "curate-sandbox-secret-7f3a"
LIMITS = Limits(memory="256MB", threads=1, timeout=2)
# A Python variable a replacement scan could read if the sandbox let it.
leak = pa.table({"s": [SECRET]})

# Placeholders: {secret} a text file outside the runs folder, {secret_csv} a CSV one,
# {other} a folder of Parquet outside it, {ops} the run's own ops.parquet, {run} its
# directory, {target} and {target_dir} paths that must never be created.
REFUSED = {
    # reading files outside the runs' stats files
    "read_text": "SELECT * FROM read_text('{secret}')",
    "read_blob": "SELECT * FROM read_blob('{secret}')",
    "read_csv": "SELECT * FROM read_csv('{secret}')",
    "read_csv_auto_passwd": "SELECT * FROM read_csv_auto('/etc/passwd')",
    "read_json": "SELECT * FROM read_json('{secret}')",
    "read_text_passwd": "SELECT content FROM read_text('/etc/passwd')",
    "read_csv_passwd": "SELECT * FROM read_csv('/etc/passwd', sep=':', header=false)",
    "sniff_csv_passwd": "SELECT * FROM sniff_csv('/etc/passwd')",
    "replacement_scan_passwd": "SELECT * FROM '/etc/passwd'",
    "replacement_scan_csv": "SELECT * FROM '{secret_csv}'",
    "summarize_secret": "SUMMARIZE SELECT * FROM read_text('{secret}')",
    "from_first_secret": "FROM read_text('{secret}')",
    "read_parquet_other": "SELECT * FROM read_parquet('{other}/x.parquet')",
    "read_parquet_other_glob": "SELECT * FROM read_parquet('{other}/*.parquet')",
    "parquet_metadata_other": "SELECT * FROM parquet_metadata('{other}/x.parquet')",
    "glob_root": "SELECT * FROM glob('/*')",
    "glob_home": "SELECT * FROM glob('/root/*')",
    "glob_runs_folder": "SELECT * FROM glob('{run}/*')",
    "recipe_yaml_next_to_stats": "SELECT * FROM read_text('{run}/recipe.yaml')",
    "path_traversal": "SELECT * FROM read_text('{ops}/../../../../../secret.txt')",
    "proc_environ": "SELECT * FROM read_text('/proc/self/environ')",
    "getenv": "SELECT getenv('HOME')",
    "python_variable": "SELECT * FROM leak",
    # writing files
    "copy_to": "COPY (SELECT 1) TO '{target}'",
    "copy_over_own_ops": "COPY (SELECT 1 AS x) TO '{ops}' (FORMAT parquet)",
    "explain_analyze_copy": "EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'",
    "explain_analyze_copy_own": "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{ops}' (FORMAT parquet)",
    "commented_explain_copy": "/*a*/ EXPLAIN /*b*/ ANALYZE /*c*/ COPY (SELECT 1) TO '{target}'",
    "explain_options_copy": "EXPLAIN (FORMAT json) COPY (SELECT 1) TO '{target}'",
    "export_database": "EXPORT DATABASE '{target_dir}'",
    "explain_analyze_export": "EXPLAIN ANALYZE EXPORT DATABASE '{target_dir}'",
    "create_table": "CREATE TABLE t AS SELECT * FROM ops",
    "explain_analyze_create": "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    "insert": "INSERT INTO ops SELECT * FROM ops",
    "explain_analyze_insert": "EXPLAIN ANALYZE INSERT INTO ops SELECT * FROM ops",
    "update": "UPDATE ops SET step = 9",
    "delete": "DELETE FROM ops",
    "drop_view": "DROP VIEW ops",
    "replace_view": "CREATE OR REPLACE VIEW ops AS SELECT 1 AS step",
    "attach_new_file": "ATTACH '{target}' AS evil",
    "copy_from_passwd": "COPY ops FROM '/etc/passwd'",
    "checkpoint_call": "CALL force_checkpoint()",
    "logging_to_file": "CALL enable_logging(storage := 'file', storage_path := '{target_dir}')",
    "select_enable_logging": "SELECT * FROM enable_logging(storage := 'file', "
                             "storage_path := '{target_dir}')",
    "explain_analyze_call": "EXPLAIN ANALYZE CALL enable_logging()",
    "pragma_profiling_output": "PRAGMA profiling_output = '{target}'",
    "query_function_copy": "SELECT * FROM query('COPY (SELECT 1) TO ''{target}''')",
    "prepare_copy": "PREPARE p AS COPY (SELECT 1) TO '{target}'",
    "vacuum": "VACUUM",
    # network
    "http": "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    "https": "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "s3": "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "hf": "SELECT * FROM read_json('hf://datasets/x/y/z.json')",
    # extensions
    "install": "INSTALL httpfs",
    "force_install": "FORCE INSTALL httpfs",
    "install_community": "INSTALL quack FROM community",
    "load": "LOAD httpfs",
    "load_file": "LOAD '{target}'",
    "explain_analyze_install": "EXPLAIN ANALYZE INSTALL httpfs",
    "explain_analyze_load": "EXPLAIN ANALYZE LOAD httpfs",
    # settings
    "set_memory": "SET memory_limit = '100GB'",
    "set_threads": "SET threads = 64",
    "reset": "RESET memory_limit",
    "pragma_threads": "PRAGMA threads = 64",
    "explain_analyze_set": "EXPLAIN ANALYZE SET threads = 64",
    "explain_analyze_pragma": "EXPLAIN ANALYZE PRAGMA threads = 64",
    "set_global_external_access": "SET GLOBAL enable_external_access = true",
    "unlock": "SET lock_configuration = false",
    "allow_directories": "SET allowed_directories = ['/']",
    "temp_directory": "SET temp_directory = '{target_dir}'",
    "set_variable": "SET VARIABLE x = 1",
    "create_secret": "CREATE SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "create_macro": "CREATE MACRO m(a) AS a",
    "detach": "DETACH memory",
    # several statements
    "select_then_copy": "SELECT 1; COPY (SELECT 1) TO '{target}'",
    "select_then_set": "SELECT 1; SET memory_limit = '100GB'",
    "select_then_install": "SELECT 1; INSTALL httpfs",
    # resources: stopped by --memory-limit or --timeout within seconds
    "cross_join_result": "SELECT * FROM range(100000) a, range(100000) b",
    "cross_join_count": "SELECT count(*) FROM range(100000) a, range(100000) b, range(1000) c",
    "endless_recursion": "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) "
                         "SELECT count(*) FROM t",
    "huge_string": "SELECT string_agg(repeat('x', 1000), '') FROM range(10000000)",
    "huge_sort": "SELECT * FROM range(100000000) ORDER BY random() LIMIT 5 OFFSET 99999990",
}
HARMLESS = {
    # DuckDB functions that may run: nothing outside the sandbox changes
    "write_log": "SELECT write_log('hello', level := 'error')",
    "checkpoint_function": "SELECT * FROM checkpoint()",
    "setseed": "SELECT setseed(0.5)",
    "databases": "SELECT path FROM duckdb_databases()",
    "settings_listing": "SELECT name, value FROM duckdb_settings()",
    "duckdb_secrets": "SELECT * FROM duckdb_secrets()",
}
SETTINGS = ["memory_limit", "threads", "enable_external_access", "lock_configuration",
            "autoload_known_extensions", "autoinstall_known_extensions",
            "allow_community_extensions", "allow_unsigned_extensions", "temp_directory",
            "allowed_paths", "allowed_directories", "enable_logging", "profiling_output"]


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """A run folder with one run, plus a secret file and another Parquet folder beside it."""
    out = tmp_path / "out"
    run = make_run(out, "20250101T000000Z-aaaaaa")
    (run / "recipe.yaml").write_text(f"name: {SECRET}\n")
    (tmp_path / "secret.txt").write_text(f"token={SECRET}\n")
    (tmp_path / "secret.csv").write_text(f"token\n{SECRET}\n")
    (tmp_path / "other").mkdir()
    pq.write_table(pa.table({"s": [SECRET]}), tmp_path / "other" / "x.parquet")
    return {"out": out, "root": tmp_path, "secret": (tmp_path / "secret.txt").as_posix(),
            "secret_csv": (tmp_path / "secret.csv").as_posix(),
            "other": (tmp_path / "other").as_posix(), "run": run.as_posix(),
            "ops": (run / "ops.parquet").as_posix(),
            "target": (tmp_path / "written.csv").as_posix(),
            "target_dir": (tmp_path / "written_dir").as_posix()}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (and DuckDB's home folder) with a hash of its bytes."""
    files = [p for base in (root, Path.home() / ".duckdb") if base.exists()
             for p in base.rglob("*") if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def attempt(world: dict, sql: str) -> tuple[pa.Table | None, dict, float]:
    """Run `sql` in the sandbox; return its result (None: refused), the connection's
    settings afterwards, and the seconds it took."""
    con = connect(world["out"], LIMITS)
    t0 = time.perf_counter()
    try:
        result = execute(con, sql.format(**world), LIMITS)
    except StatsError as exc:
        assert "\n" not in str(exc), "errors are one line"
        result = None
    seconds = time.perf_counter() - t0
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE list_contains(?, name)",
        [SETTINGS]).fetchall())
    assert con.execute("SELECT count(*) FROM ops").fetchone() == (3,), "the views are intact"
    con.close()
    return result, settings, seconds


@pytest.fixture
def baseline(world) -> dict:
    """The settings a harmless query leaves behind, and the files before any query."""
    _, settings, _ = attempt(world, "SELECT 1")
    return {"settings": settings, "files": snapshot(world["root"])}


def assert_no_harm(world: dict, baseline: dict, result: pa.Table | None, settings: dict,
                   seconds: float) -> None:
    assert settings == baseline["settings"], "no setting changed"
    assert snapshot(world["root"]) == baseline["files"], "no file written, changed or deleted"
    assert not Path(world["target"]).exists() and not Path(world["target_dir"]).exists()
    assert seconds < 20, "stopped by the limits"
    if result is not None:
        text = repr(result.to_pylist())
        assert SECRET not in text and "root:x:" not in text, "no secret content returned"


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_hostile_query_is_refused(world, baseline, sql):
    result, settings, seconds = attempt(world, sql)
    assert result is None, "refused with a StatsError"
    assert_no_harm(world, baseline, result, settings, seconds)


@pytest.mark.parametrize("sql", HARMLESS.values(), ids=HARMLESS.keys())
def test_allowed_function_is_harmless(world, baseline, sql):
    result, settings, seconds = attempt(world, sql)
    assert_no_harm(world, baseline, result, settings, seconds)


def test_limits_are_in_place(world):
    result, _, _ = attempt(world, "SELECT current_setting('memory_limit') AS m, "
                                  "current_setting('threads') AS t, "
                                  "current_setting('enable_external_access') AS e, "
                                  "current_setting('lock_configuration') AS l, "
                                  "current_setting('temp_directory') AS d, "
                                  "current_setting('autoinstall_known_extensions') AS i, "
                                  "current_setting('autoload_known_extensions') AS a, "
                                  "current_setting('allow_community_extensions') AS c")
    row = result.to_pylist()[0]
    assert row["m"].startswith("244.1 MiB")  # 256MB
    assert row == {**row, "t": 1, "e": False, "l": True, "d": "", "i": False, "a": False,
                   "c": False}


def test_timeout_stops_an_endless_query_quickly(world):
    t0 = time.perf_counter()
    with pytest.raises(StatsError, match="timeout"):
        execute(connect(world["out"], LIMITS), "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL "
                "SELECT n + 1 FROM t WHERE n < 1e15) SELECT max(n) FROM t", LIMITS)
    assert time.perf_counter() - t0 < LIMITS.timeout + 5


def test_memory_limit_caps_the_result(world):
    with pytest.raises(StatsError, match="memory limit"):
        execute(connect(world["out"], LIMITS), "SELECT repeat('x', 1000) FROM range(1000000)",
                Limits(memory="256MB", threads=1, timeout=30))
