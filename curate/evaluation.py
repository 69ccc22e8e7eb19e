"""Scoring a dedup run against ground-truth clusters (precision/recall of pairs)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations


def predicted_pairs(dropped_to_kept: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Co-clustered pairs: a dropped row with its keeper, and rows sharing a keeper."""
    groups: dict[str, set[str]] = defaultdict(set)
    for dropped, kept in dropped_to_kept:
        groups[kept].update((kept, dropped))
    return {tuple(sorted(p)) for g in groups.values() for p in combinations(sorted(g), 2)}


def true_pairs(clusters: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """All pairs within each ground-truth cluster, from (id, cluster_id) rows."""
    groups: dict[str, list[str]] = defaultdict(list)
    for ident, cluster in clusters:
        groups[cluster].append(ident)
    return {tuple(sorted(p)) for g in groups.values() if len(g) > 1
            for p in combinations(sorted(g), 2)}


def precision_recall(predicted: set, truth: set) -> tuple[float, float]:
    hit = len(predicted & truth)
    return (hit / len(predicted) if predicted else 1.0, hit / len(truth) if truth else 1.0)
