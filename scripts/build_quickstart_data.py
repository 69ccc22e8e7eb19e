"""Build the bundled quickstart shards from the Python docs in Debian's python3-doc.

    apt-get install -y python3-doc
    python scripts/build_quickstart_data.py          # writes data/quickstart/*.parquet

Each reStructuredText source under /usr/share/doc/python3.11/html/_sources is split
into one document per section. The output is deterministic: same package version,
same bytes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
# A section title is a text line followed by an underline of one repeated punctuation char.
_TITLE = re.compile(r"^(?P<title>[^\s].*)\n(?P<rule>([=\-~^\"'`#*+])\3{2,})\s*$", re.MULTILINE)


def sections(text: str) -> list[tuple[str, str]]:
    """(title, body) for each section of an RST document; body includes the title."""
    starts = [m.start() for m in _TITLE.finditer(text)]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts, len(text)]
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        chunk = text[a:b].strip()
        title = chunk.splitlines()[0] if chunk else ""
        if chunk:
            out.append((title, chunk))
    return out


def build(out_dir: Path, shards: int, limit: int) -> int:
    rows = []
    for path in sorted(SOURCES.rglob("*.rst.txt")):
        rel = path.relative_to(SOURCES).as_posix().removesuffix(".rst.txt")
        text = path.read_text(encoding="utf-8", errors="strict")
        for k, (title, body) in enumerate(sections(text)):
            rows.append({"id": f"pydoc:{rel}#{k}", "text": body, "title": title,
                         "source": "python3.11-doc"})
    # An even stride over all sections, so every part of the docs is represented.
    rows = rows[:: max(1, len(rows) // limit)][:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.parquet"):
        old.unlink()
    per = -(-len(rows) // shards)
    for i in range(shards):
        part = pa.Table.from_pylist(rows[i * per:(i + 1) * per])
        pq.write_table(part, out_dir / f"part-{i:05d}.parquet", compression="zstd")
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/quickstart"))
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--limit", type=int, default=4000, help="keep N sections, evenly spread")
    args = ap.parse_args()
    n = build(args.out, args.shards, args.limit)
    print(f"wrote {n} documents to {args.out} in {args.shards} shards")


if __name__ == "__main__":
    main()
