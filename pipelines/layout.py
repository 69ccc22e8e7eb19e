"""Where a run's files live. The only module that spells out the output layout:

    OUT/part-SSSSS-KKKK.parquet           published rows (listed in the manifest)
    OUT/_curate/manifest.json             the files in OUT that curate published
    OUT/_curate/lock                      held while a run writes into OUT
    OUT/_curate/publishing                set while a run moves its shards into OUT
    OUT/_curate/runs/RUN_ID/              one run: records, staging, checkpoints, logs
"""

from __future__ import annotations

from pathlib import Path

CURATE_DIR = "_curate"
EXAMPLE_RUN_ID = "20260101T000000Z-000000"


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


def error_log(run_dir: Path) -> Path:
    """The full traceback of a failed run (the CLI and `runs.error` show one line)."""
    return run_dir / "error.log"


def examples_of_own_files(out: Path) -> list[Path]:
    """One path of each kind of file curate writes under OUT, to test input globs against."""
    run = runs_dir(out) / EXAMPLE_RUN_ID
    return [
        out / output_shard_name(0, 0),
        staging_dir(run) / output_shard_name(0, 0),
        run / "runs.parquet",
        run / "ops.parquet",
        run / "dropped" / "part-00000.parquet",
        run / "signals" / "part-00000.parquet",
        checkpoints_dir(run) / "step-001" / "part-00000.parquet",
        manifest_file(out),
    ]
