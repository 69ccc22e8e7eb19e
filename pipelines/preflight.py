"""Checks on a run's input and output paths, made before anything is written or computed.

Refused: an input glob matching nothing, input shards inside the output folder, an input
glob that would match files curate writes (a second run would read the first one's
output or records as input), shards inside any curate `_curate/` folder, and an output
folder holding files curate did not write (a publish would mix with, or a later one
replace, the user's files). `curate run` and `curate validate` both call
`checked_shards`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipelines import layout
from pipelines.errors import OutputError
from pipelines.publish import owned_files
from pipelines.shards import Shard, discover
from pipelines.spec import InputSpec

_SHOWN = 5  # foreign files named in an error; the rest are counted


def glob_regex(pattern: str) -> re.Pattern:
    """A regex matching the absolute paths that `glob.glob(pattern, recursive=True)` can
    return: `**` spans any number of directories, `*` and `?` stay inside one name."""
    parts = []
    names = os.path.abspath(pattern).split(os.sep)[1:]
    for k, name in enumerate(names):
        if name == "**":
            parts.append(".*/" if k == len(names) - 1 else "(?:[^/]+/)*")
            continue
        out, i = [], 0
        while i < len(name):
            c = name[i]
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[" and name.find("]", i + 2) != -1:
                end = name.find("]", i + 2)
                body = name[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
            else:
                out.append(re.escape(c))
            i += 1
        parts.append("".join(out) + "/")
    return re.compile("/" + "".join(parts).rstrip("/") + r"\Z")


def checked_shards(inp: InputSpec, out: Path) -> list[Shard]:
    """The input's shards (each checked by `discover`), once `check` found running them
    into `out` safe. Raises a `CurateError` naming the file or the folder otherwise."""
    shards = discover(inp.path, inp.format, inp.text_column, inp.id_column)
    check(inp.path, [s.path for s in shards], out)
    return shards


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check(pattern: str, shard_paths: list[str], out: Path) -> None:
    """Raise `OutputError` if running from `pattern` (matching `shard_paths`) into `out`
    could read curate's own files or destroy or mix with files curate did not write."""
    out = Path(os.path.realpath(out))
    real = [Path(os.path.realpath(p)) for p in shard_paths]
    inside = [p for p in real if _inside(p, out)]
    if inside:
        raise OutputError(
            f"output folder {out} contains input shards ({inside[0]}"
            f"{f' and {len(inside) - 1} more' if len(inside) > 1 else ''}); curate would "
            "replace or re-read them: write the output to a folder outside the input")
    internal = [p for p in real if layout.CURATE_DIR in p.parts]
    if internal:
        raise OutputError(
            f"input.path '{pattern}' matches curate's internal files ({internal[0]}); "
            "read a run's published part-*.parquet files, not its _curate/ folder")
    matcher = glob_regex(pattern)
    for own in layout.examples_of_own_files(out):
        if matcher.match(own.as_posix()):
            raise OutputError(
                f"input.path '{pattern}' would also match files curate writes into "
                f"{out} (e.g. {own}), so a later run would read its own output as input: "
                "put the output outside the input tree or narrow the glob")
    foreign = foreign_files(out)
    if foreign:
        names = ", ".join(foreign[:_SHOWN])
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise OutputError(
            f"output folder {out} holds files curate did not write ({names}{more}); "
            "curate never replaces or deletes those: choose a new or empty folder, or move "
            "them out")


def foreign_files(out: Path) -> list[str]:
    """Entries of OUT that curate did not publish (a subfolder counts as one entry)."""
    if not out.is_dir():
        if out.exists():
            raise OutputError(f"output path {out} is a file, not a folder")
        return []
    owned = owned_files(out)
    return sorted(e.name for e in os.scandir(out)
                  if e.name != layout.CURATE_DIR and e.name not in owned)
