"""Publishing a run's shards into OUT, touching only files curate published before.

`OUT/_curate/manifest.json` lists every file curate placed in OUT. A publish replaces
and deletes only files named there, so a file the user put in OUT is never removed or
overwritten (`pipelines.preflight` refuses such folders before compute; the checks here
are the last line of defence against a file that appeared during the run).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipelines import layout
from pipelines.errors import OutputError


def owned_files(out: Path) -> set[str]:
    """Names of the files in OUT that curate published (empty for a new folder)."""
    path = layout.manifest_file(out)
    if not path.is_file():
        return set()
    try:
        return set(json.loads(path.read_text())["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{path} is damaged ({exc}); curate cannot tell which files in "
                          f"{out} it wrote: move them or use a new output folder") from None


def _write_manifest(out: Path, files: list[str], run_id: str) -> None:
    path = layout.manifest_file(out)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"run_id": run_id, "files": sorted(files)}, indent=1))
    os.replace(tmp, path)


def publish(staging: Path, out: Path, run_id: str) -> None:
    """Replace the previous run's output shards with this run's, crash-safely.

    A marker names the run being published and its files; if the process dies half-way,
    the next run into OUT finishes this publish first (`finish_publish`), so OUT never
    stays a mix of two runs' shards.
    """
    files = sorted(p.name for p in staging.glob("part-*.parquet"))
    marker = layout.publishing_marker(out)
    marker.write_text(json.dumps({"staging": str(staging), "run_id": run_id, "files": files}))
    finish_publish(out)


def finish_publish(out: Path) -> None:
    """Complete an interrupted publish, if one is recorded. Idempotent."""
    marker = layout.publishing_marker(out)
    if not marker.is_file():
        return
    try:
        plan = json.loads(marker.read_text())
    except ValueError:
        # A marker torn by a crash while it was written: nothing was moved yet.
        marker.unlink()
        return
    staging, new = Path(plan["staging"]), set(plan["files"])
    old = owned_files(out)
    for name in sorted(new - old):
        if (out / name).exists() and (staging / name).exists():
            raise OutputError(f"{out / name} appeared during the run and was not written by "
                              "curate; refusing to overwrite it (move it, then rerun)")
    for name in sorted(old - new):
        (out / name).unlink(missing_ok=True)
    for name in sorted(new):
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    _write_manifest(out, sorted(new), plan["run_id"])
    shutil.rmtree(staging, ignore_errors=True)
    marker.unlink()
