"""`curate report`: one self-contained HTML file of what a run did."""

from __future__ import annotations
