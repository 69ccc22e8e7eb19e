"""`curate inspect` and `curate explain`: read documents and one row's story in a terminal."""

from __future__ import annotations
