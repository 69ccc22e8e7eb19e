"""Where a run's files live. The only module that spells out the output layout:

    OUT/part-SSSSS-KKKK.parquet           published rows (listed in the manifest)
    OUT/_curate/manifest.json             the files in OUT that curate published
    OUT/_curate/lock                      held while a run writes into OUT
    OUT/_curate/publishing                set while a run moves its shards into OUT
    OUT/_curate/runs/RUN_ID/              one run: records, staging, checkpoints, logs

A run folder (RUN_DIR):

    RUN_DIR/runs.parquet, ops.parquet     the run's record and its funnel
    RUN_DIR/dropped/part-SSSSS.parquet    dropped rows of input shard SSSSS
    RUN_DIR/signals/part-SSSSS.parquet    signals of input shard SSSSS
    RUN_DIR/removed/part-SSSSS.parquet    dropped rows' texts (all or a sample) of shard SSSSS
    RUN_DIR/recipe.yaml, fingerprint      the resolved recipe; the identity of the work
    RUN_DIR/staging/, checkpoints/        unpublished output; step checkpoints
    RUN_DIR/error.log                     a failed run's traceback

The stats tables' schemas are in `pipelines.tables`.
"""

from __future__ import annotations

from pathlib import Path

CURATE_DIR = "_curate"
EXAMPLE_RUN_ID = "20260101T000000Z-000000"
RUNS_FILE = "runs.parquet"
OPS_FILE = "ops.parquet"
DROPPED_DIR = "dropped"
SIGNALS_DIR = "signals"
REMOVED_DIR = "removed"
FITTED_DIR = "fitted"
FITTED_ARRAY = ".array.parquet"  # fitted numeric arrays: the `fitted` stats view
# Stats table (view) name -> glob of its files under RUN_DIR.
RUN_TABLES = {
    "runs": RUNS_FILE,
    "ops": OPS_FILE,
    "signals": f"{SIGNALS_DIR}/*.parquet",
    "dropped": f"{DROPPED_DIR}/*.parquet",
    "removed": f"{REMOVED_DIR}/*.parquet",
    "fitted": f"{FITTED_DIR}/*{FITTED_ARRAY}",
}


def curate_dir(out: Path) -> Path:
    return out / CURATE_DIR


def runs_dir(out: Path) -> Path:
    return out / CURATE_DIR / "runs"


def manifest_file(out: Path) -> Path:
    return out / CURATE_DIR / "manifest.json"


def publishing_marker(out: Path) -> Path:
    return out / CURATE_DIR / "publishing"


def lock_file(out: Path) -> Path:
    return out / CURATE_DIR / "lock"


def output_shard_name(shard: int, part: int) -> str:
    return f"part-{shard:05d}-{part:04d}.parquet"


def staging_dir(run_dir: Path) -> Path:
    """Output shards of a run that has not succeeded yet."""
    return run_dir / "staging"


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def runs_file(run_dir: Path) -> Path:
    """The run's row of the `runs` table; written when the run ends."""
    return run_dir / RUNS_FILE


def ops_file(run_dir: Path) -> Path:
    return run_dir / OPS_FILE


def dropped_file(run_dir: Path, shard: int) -> Path:
    return run_dir / DROPPED_DIR / f"part-{shard:05d}.parquet"


def signals_file(run_dir: Path, shard: int) -> Path:
    return run_dir / SIGNALS_DIR / f"part-{shard:05d}.parquet"


def removed_file(run_dir: Path, shard: int) -> Path:
    """Dropped rows of input shard `shard` with their text (`output.keep_removed`)."""
    return run_dir / REMOVED_DIR / f"part-{shard:05d}.parquet"


def recipe_file(run_dir: Path) -> Path:
    """The resolved recipe text the run executed."""
    return run_dir / "recipe.yaml"


def fingerprint_file(run_dir: Path) -> Path:
    """The identity of the run's work (`pipelines.checkpoints.fingerprint`)."""
    return run_dir / "fingerprint"


def fitted_dir(run_dir: Path) -> Path:
    """Values fitted by `fit` stages (e.g. k-means centroids), reused on resume."""
    return run_dir / FITTED_DIR


def error_log(run_dir: Path) -> Path:
    """The full traceback of a failed run (the CLI and `runs.error` show one line)."""
    return run_dir / "error.log"


def examples_of_own_files(out: Path) -> list[Path]:
    """One path of each kind of file curate writes under OUT, to test input globs against."""
    run = runs_dir(out) / EXAMPLE_RUN_ID
    return [
        out / output_shard_name(0, 0),
        staging_dir(run) / output_shard_name(0, 0),
        runs_file(run),
        ops_file(run),
        dropped_file(run, 0),
        signals_file(run, 0),
        removed_file(run, 0),
        checkpoints_dir(run) / "step-001" / "part-00000.parquet",
        manifest_file(out),
    ]
