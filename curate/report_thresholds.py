"""Where a step's decision threshold lies on its signals, read from the run's recipe.

A small explicit table, (op, param) -> the signal the param bounds, is enough: the report
only draws a line at the threshold value, it does not re-decide anything. The values come
from the recipe the run recorded (RUN_DIR/recipe.yaml), with the operator's defaults for
params the recipe left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from operators import registry

_GOPHER_REPETITION = {
    **{f"max_{k}": k for k in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac",
                                "dup_line_char_frac")},
    **{f"max_top_{n}gram_frac": f"top_{n}gram_frac" for n in (2, 3, 4)},
    **{f"max_dup_{n}gram_frac": f"dup_{n}gram_frac" for n in range(5, 11)},
}
# op -> param -> signal keys that the param's value bounds (from each op's rules).
BOUNDS: dict[str, dict[str, tuple[str, ...]]] = {
    "filter.length": {"min_chars": ("chars",), "max_chars": ("chars",),
                      "min_words": ("words",), "max_words": ("words",)},
    "filter.language": {"min_score": ("language_score",)},
    "quality.gopher": {
        "min_words": ("word_count",), "max_words": ("word_count",),
        "min_mean_word_length": ("mean_word_length",),
        "max_mean_word_length": ("mean_word_length",),
        "max_symbol_word_ratio": ("hash_ratio", "ellipsis_ratio"),
        "max_bullet_lines_ratio": ("bullet_lines_frac",),
        "max_ellipsis_lines_ratio": ("ellipsis_lines_frac",),
        "min_alpha_words_ratio": ("alpha_words_frac",),
        "min_stop_words": ("stop_words",),
        **{p: (s,) for p, s in _GOPHER_REPETITION.items()},
    },
    "quality.c4": {"min_num_sentences": ("sentences",)},
    "quality.fineweb": {"line_punct_thr": ("line_punct_ratio",),
                        "short_line_thr": ("short_line_ratio",),
                        "char_duplicates_ratio": ("char_dup_ratio",),
                        "new_line_ratio": ("list_ratio",)},
    "quality.classifier": {"threshold": ("quality_score",)},
}
# Params whose threshold sits at a transform of the value (SemDeDup: cosine > 1 - eps).
_TRANSFORMED = {("dedup.semantic", "eps"): ("max_similarity", lambda eps: 1.0 - eps)}


@dataclass(frozen=True)
class Threshold:
    """One decision boundary of a step on one signal."""

    param: str
    value: float


@dataclass(frozen=True)
class StepInfo:
    """A recipe step as the report needs it: its op and its effective params."""

    op: str
    name: str
    params: dict[str, Any]


def recipe_steps(recipe_path: Path) -> list[StepInfo]:
    """The steps of a recorded recipe (index i is step i + 1), params with op defaults.

    An unreadable recipe, or an op no longer registered, gives what can be known: no
    steps, or the step's params as written.
    """
    try:
        raw = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    steps = []
    for item in raw.get("steps") or []:
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            continue
        op, given = item["op"], dict(item.get("params") or {})
        try:
            fields = registry.get(op).Params.model_fields
            defaults = {k: f.default for k, f in fields.items() if not f.is_required()}
        except KeyError:
            defaults = {}
        steps.append(StepInfo(op, str(item.get("name") or op), {**defaults, **given}))
    return steps


def thresholds(step: StepInfo) -> dict[str, list[Threshold]]:
    """Signal key -> the thresholds the step's params put on it (params set to null: none)."""
    found: dict[str, list[Threshold]] = {}
    for param, keys in BOUNDS.get(step.op, {}).items():
        value = step.params.get(param)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if param.startswith("min_") and value == 0:
            continue  # a lower bound of 0 on a count or share drops nothing: no line
        for key in keys:
            found.setdefault(key, []).append(Threshold(param, float(value)))
    for (op, param), (key, at) in _TRANSFORMED.items():
        value = step.params.get(param)
        if op == step.op and isinstance(value, int | float):
            found.setdefault(key, []).append(Threshold(param, at(float(value))))
    return found
