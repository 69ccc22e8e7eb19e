"""Values that `fit` stages computed, recorded under the run folder and reused on resume.

Numeric arrays (e.g. k-means centroids) are stored as Parquet rows that `curate stats`
shows as the `fitted` view; tables as Parquet; anything else pickled.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout
from pipelines.tables import FITTED_SCHEMA


@dataclass(frozen=True)
class FitStore:
    """Fitted values recorded under the run folder (`RUN_DIR/fitted/`), reused on resume.

    Numeric arrays are stored as Parquet rows (run_id, step, name, row, value), which
    `curate stats` shows as the `fitted` view; dtype and shape are kept in the file's
    metadata so the array loads back exactly. Tables are stored as Parquet as they are,
    anything else pickled.
    """

    root: Path

    def _stem(self, step: int, name: str) -> Path:
        return self.root / f"step-{step:03d}-{name}"

    def save(self, step: int, name: str, value: Any) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        stem = self._stem(step, name)
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            path = stem.with_name(stem.name + layout.FITTED_ARRAY)
            pq.write_table(self._array_table(step, name, value), path)
        elif isinstance(value, pa.Table):
            path = stem.with_name(stem.name + ".table.parquet")
            pq.write_table(value, path)
        else:
            path = stem.with_suffix(".pkl")
            path.write_bytes(pickle.dumps(value))
        return path

    def _array_table(self, step: int, name: str, value: np.ndarray) -> pa.Table:
        if value.ndim == 0:
            rows = value.reshape(1, 1)
        else:  # explicit width: -1 cannot be inferred for an array with no rows
            rows = value.reshape(value.shape[0], int(np.prod(value.shape[1:], dtype=np.int64)))
        n = rows.shape[0]
        table = pa.table({
            "run_id": pa.array([self.root.parent.name] * n, pa.string()),
            "step": pa.array(np.full(n, step, np.int16)),
            "name": pa.array([name] * n, pa.string()),
            "row": pa.array(np.arange(n, dtype=np.int64)),
            "value": pa.array(list(rows.astype(np.float64)), pa.list_(pa.float64())),
        }, schema=FITTED_SCHEMA)
        meta = {"dtype": value.dtype.str, "shape": json.dumps(list(value.shape))}
        return table.replace_schema_metadata({f"curate.{k}": v for k, v in meta.items()})

    def load(self, step: int, name: str) -> Any | None:
        stem = self._stem(step, name)
        if (p := stem.with_name(stem.name + layout.FITTED_ARRAY)).is_file():
            table = pq.read_table(p)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            values = np.array(table["value"].to_pylist(), dtype=np.float64)
            shape = tuple(json.loads(meta["curate.shape"]))
            return values.reshape(shape).astype(np.dtype(meta["curate.dtype"]))
        if (p := stem.with_name(stem.name + ".table.parquet")).is_file():
            return pq.read_table(p)
        if (p := stem.with_suffix(".pkl")).is_file():
            return pickle.loads(p.read_bytes())
        return None
