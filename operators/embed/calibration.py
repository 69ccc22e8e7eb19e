"""Calibration texts for the int8 openvino build: docstrings of the Python standard library.

Static int8 needs the range of each layer's activations on real prose. The build must run
offline and on any machine, so the texts come from the interpreter itself: the docstrings
of a fixed list of standard-library modules (English technical prose, as on the web pages
these models mostly embed). The choice is deterministic for a given Python version. On
the dev box these did as well as 300 sections of the Python docs, and four sentences did
far worse (benchmarks/embed.md, "openvino int8"): what matters is a few hundred paragraphs
of natural text, not the domain.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

MODULES = (
    "argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "fractions",
    "functools", "heapq", "http.client", "inspect", "itertools", "json", "logging", "os",
    "pathlib", "re", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess",
    "tarfile", "textwrap", "threading", "unittest", "urllib.request", "zipfile",
)
MIN_CHARS = 200  # shorter docstrings are one-liners, too little context per sample


def calibration_texts(n: int = 300, seed: int = 0) -> list[str]:
    """`n` public docstrings of at least MIN_CHARS characters, sampled with `seed`."""
    docs: list[str] = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, obj in sorted(vars(module).items()):
            doc = None if attr.startswith("_") else inspect.getdoc(obj)
            if doc and len(doc) >= MIN_CHARS:
                docs.append(doc)
    docs = sorted(set(docs))  # re-exported objects would count twice
    pick = np.random.default_rng(seed).choice(len(docs), min(n, len(docs)), replace=False)
    return [docs[i] for i in sorted(pick)]
