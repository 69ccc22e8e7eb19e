"""The stats tables' schemas: the one module that defines them.

Every run writes these under its run folder (file names: `pipelines.layout.RUN_TABLES`);
`curate stats` exposes each as a view of the same name (see docs/stats.md).
"""

from __future__ import annotations

import pyarrow as pa

RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("recipe", pa.string()), ("recipe_sha", pa.string()),
    ("started", pa.timestamp("us", tz="UTC")), ("finished", pa.timestamp("us", tz="UTC")),
    ("status", pa.string()), ("error", pa.string()), ("rows_in", pa.int64()),
    ("rows_out", pa.int64()), ("seed", pa.int64()), ("input", pa.string()),
    ("versions", pa.string()), ("resumed_from_step", pa.int16()),
])
"""runs: one row per run: its recipe (name and SHA-256 of the resolved text), when it
started and finished, status (succeeded/failed) and one-line error, rows in and out,
seed, input glob, package versions, and the checkpointed step it resumed after."""

OPS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("op", pa.string()), ("name", pa.string()),
    ("rows_in", pa.int64()), ("rows_out", pa.int64()), ("rows_dropped", pa.int64()),
    ("seconds", pa.float64()), ("metrics", pa.string()),
    ("tokens_in", pa.int64()), ("bytes_out", pa.int64()), ("words_out", pa.int64()),
    ("tokens_out", pa.int64()),
])
"""ops: one row per step of a succeeded run (step 0 is `input.read`): the funnel of rows
in, out and dropped, CPU seconds, the step's metrics as JSON, and the size of the text:
tokens going in, and the UTF-8 bytes, words and tokens of the rows the step kept
(`pipelines.tokens`). Each row's text is measured once, as it leaves the pipeline, and
counted in every step it survived, so a step that rewrites text (`text.normalize`) and
the steps before it are counted on the rewritten text. Tokens are null when
`execution.tokenizer` is `none`."""

DROPPED_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("op", pa.string()), ("name", pa.string()),
    ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
])
"""dropped: one row per dropped (or quarantined) input row: the step that dropped it, the
row's id, a reason code and a free-text detail."""

SIGNALS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("op", pa.string()), ("name", pa.string()),
    ("id", pa.string()), ("key", pa.string()), ("num", pa.float64()), ("text", pa.string()),
])
"""signals: one row per (row, signal) a step computed: the signal's key and its value, in
`num` for a number or `text` otherwise (the other is null)."""

FITTED_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("name", pa.string()),
    ("row", pa.int64()), ("value", pa.list_(pa.float64())),
])
"""fitted: the numeric arrays `fit` stages computed (e.g. k-means centroids), one row per
array row (`value` the row's numbers; a 1-D array has one number a row), by step and fit
stage name."""

REMOVED_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("op", pa.string()), ("name", pa.string()),
    ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("text", pa.string()),
])
"""removed: dropped rows with their text as it was when dropped (null for rows the reader
quarantined: unreadable, too large or a duplicate id): every dropped row
(`output.keep_removed: all`) or, per input shard, step and reason, the
`output.removed_per_reason` rows with the smallest xxh3-64 of their id seeded by
`execution.seed` (`sample`, the default); none with `none`."""

STATS_TABLES: dict[str, pa.Schema] = {
    "runs": RUNS_SCHEMA,
    "ops": OPS_SCHEMA,
    "signals": SIGNALS_SCHEMA,
    "dropped": DROPPED_SCHEMA,
    "removed": REMOVED_SCHEMA,
    "fitted": FITTED_SCHEMA,
}
"""View name -> schema of every stats table."""
