"""Names of the bookkeeping columns every row carries through a run.

`_order` (int64) is the row's input position, shard-major: shard << 40 | row.
A row dropped at step k keeps travelling with `_drop_step = k` (and its text, for the
writer's `removed` table and token counts) so the final writer can account for every
input row. Step 0 is input validation.
"""

from __future__ import annotations

import re

import pyarrow as pa

from operators.base import ORDER_COLUMN

ORDER = ORDER_COLUMN
SHARD = "_shard"
DROP_STEP = "_drop_step"
REASON = "_reason"
DETAIL = "_detail"
ROW_BITS = 40

BOOKKEEPING = (ORDER, SHARD, DROP_STEP, REASON, DETAIL)


def signal_column(step: int, key: str) -> str:
    return f"_s{step}:{key}"


def seconds_column(step: int) -> str:
    return f"_t{step}"


def parse_signal_column(name: str) -> tuple[int, str] | None:
    if not name.startswith("_s") or ":" not in name:
        return None
    step, key = name[2:].split(":", 1)
    return (int(step), key) if step.isdigit() else None


def order_values(shard: int, first_row: int, n: int) -> pa.Array:
    import numpy as np

    base = (shard << ROW_BITS) + first_row
    return pa.array(np.arange(base, base + n, dtype=np.int64))


def is_internal(name: str) -> bool:
    return name.startswith("_")


def is_temporary(name: str) -> bool:
    """A column a global operator added for its own later stages."""
    return (name.startswith("_") and name not in BOOKKEEPING
            and parse_signal_column(name) is None and not re.fullmatch(r"_t\d+", name))
