"""The bundled sample corpus (data/quickstart), for `curate sample`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "quickstart"


def load_sample(rows: int) -> pa.Table:
    shards = sorted(SAMPLE_DIR.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"the bundled sample corpus is missing: no shards in {SAMPLE_DIR}")
    parts, have = [], 0
    for shard in shards:
        if have >= rows:
            break
        table = pq.read_table(shard)
        parts.append(table.slice(0, rows - have))
        have += parts[-1].num_rows
    return pa.concat_tables(parts)


def write_sample(dest: Path, rows: int) -> int:
    """Write the first `rows` sample documents to `dest` as Parquet or JSONL."""
    table = load_sample(rows)
    suffix = dest.suffix.lower()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        pq.write_table(table, dest)
    elif suffix in (".jsonl", ".ndjson"):
        with dest.open("w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"{dest}: use a .parquet or .jsonl file name")
    return table.num_rows
