"""The report's pure parts: thresholds read from a recorded recipe, charts' SVG."""

from __future__ import annotations

import re

from curate import report_charts as charts
from curate.report_data import Histogram
from curate.report_thresholds import StepInfo, recipe_steps, thresholds


def test_recipe_steps_fill_op_defaults_under_the_given_params(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps:\n  - op: quality.gopher\n    name: g\n    params: {min_words: 10}\n"
                      "  - op: no.such.op\n")
    gopher, unknown = recipe_steps(recipe)
    assert (gopher.op, gopher.name) == ("quality.gopher", "g")
    assert gopher.params["min_words"] == 10 and gopher.params["max_words"] == 100_000
    assert unknown.params == {}  # an op no longer registered: its params as written
    assert recipe_steps(tmp_path / "missing.yaml") == []


def test_thresholds_per_signal():
    gopher = thresholds(StepInfo("quality.gopher", "g", {
        "min_words": 50, "max_words": 100_000, "max_symbol_word_ratio": 0.1,
        "max_dup_5gram_frac": None, "min_stop_words": 0}))
    assert [(t.param, t.value) for t in gopher["word_count"]] == [
        ("min_words", 50.0), ("max_words", 100_000.0)]
    assert set(gopher) == {"word_count", "hash_ratio", "ellipsis_ratio"}  # null, 0: no line
    semantic = thresholds(StepInfo("dedup.semantic", "s", {"eps": 0.05}))
    assert [t.value for t in semantic["max_similarity"]] == [0.95]
    assert thresholds(StepInfo("text.normalize", "n", {})) == {}


def _hist(key: str) -> Histogram:
    return Histogram(1, "step $x$", key, 0.0, 1.0, [3, 2, 1], [0, 1, 4], 0, 1.0,
                     thresholds(StepInfo("quality.classifier", "c", {"threshold": 0.5}))[
                         "quality_score"])


def test_histogram_svg_draws_data_and_threshold_and_takes_dollars_literally():
    svg = charts.histogram(_hist("quality_score $\\frac{1}{0}$"))
    assert svg.startswith("<svg") and "<metadata" not in svg
    assert 'id="data-0"' in svg and 'id="data-dropped-0"' in svg and 'id="threshold-0"' in svg
    assert "$x$" in svg  # a step name with dollars is text, not mathtext


def test_inlined_charts_share_a_page_without_id_clashes():
    a, b = (charts.inline(charts.histogram(_hist("k")), p) for p in ("c1", "c2"))
    ids_a, ids_b = (set(re.findall(r'\bid="([^"]+)"', s)) for s in (a, b))
    assert ids_a and not ids_a & ids_b
    for svg, ids in ((a, ids_a), (b, ids_b)):
        for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', svg):
            assert (ref[0] or ref[1]) in ids
