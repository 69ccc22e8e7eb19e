"""filter.language: labels, scores, keep / min_score / annotate, empty text, validation."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.recipe import RecipeError, parse_recipe
from operators.base import Context
from operators.filter.language import LABELS, LanguageFilter, LanguageParams, identifier

ROWS = {
    "en": "The committee will publish its final report on the new railway line next spring.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im Frühjahr "
          "veröffentlichen.",
    "fr": "Le comité publiera son rapport final sur la nouvelle ligne ferroviaire au printemps "
          "prochain.",
    "es": "El comité publicará su informe final sobre la nueva línea ferroviaria la próxima "
          "primavera.",
    "empty": "   ",
}


def run(params: dict, texts: list[str | None] | None = None):
    texts = list(ROWS.values()) if texts is None else texts
    op = LanguageFilter(LanguageParams(**params), Context())
    op.setup()
    return op.process(pa.table({"text": pa.array(texts, pa.string())}))


def test_identifies_languages_with_high_scores():
    result = run({"action": "annotate"})
    langs = result.signals["language"].to_pylist()
    scores = result.signals["language_score"].to_pylist()
    assert langs == ["en", "de", "fr", "es", "und"]
    assert min(scores[:4]) > 0.7 and scores[4] == 0.0
    assert result.reason.null_count == 5  # annotate drops nothing


def test_keep_and_reasons():
    result = run({"keep": ["en", "fr"]})
    assert result.reason.to_pylist() == [None, "language", None, "language", "language"]
    detail = result.detail.to_pylist()
    assert detail[1].startswith("language=de score=") and "not in keep=['en', 'fr']" in detail[1]
    assert detail[4].startswith("language=und score=0.000")


def test_min_score_drops_uncertain_text_in_a_kept_language():
    texts = [ROWS["en"], "ok"]
    scores = run({"action": "annotate"}, texts).signals["language_score"].to_pylist()
    cut = (scores[0] + scores[1]) / 2 if scores[1] < scores[0] else 1.0
    result = run({"keep": list(LABELS), "min_score": cut}, texts)
    assert result.reason.to_pylist()[0] is None
    assert result.reason.to_pylist()[1] == "language"
    assert f"< min_score={cut}" in result.detail.to_pylist()[1]


def test_null_text_is_undetermined():
    result = run({"keep": ["und"]}, [None])
    assert result.signals["language"].to_pylist() == ["und"]
    assert result.reason.to_pylist() == [None]


def test_only_the_first_max_chars_are_classified():
    text = ROWS["en"] + " " + ROWS["de"] * 20
    assert run({"action": "annotate", "max_chars": 80}, [text]).signals[
        "language"].to_pylist() == ["en"]
    assert run({"action": "annotate"}, [text]).signals["language"].to_pylist() == ["de"]


def test_labels_match_the_packaged_model():
    assert set(identifier().labels) == LABELS


def test_recipe_validation():
    base = ("name: t\ninput: {path: x.parquet}\noutput: {path: o}\nsteps:\n"
            "  - op: filter.language\n    params: {keep: [EN, de], min_score: 0.5}\n")
    op = parse_recipe(base).operators[0]
    assert op.params.keep == ["en", "de"] and op.signal_keys["language"] == "text"
    with pytest.raises(RecipeError, match="unknown language code"):
        parse_recipe(base.replace("de]", "xx]"))
    with pytest.raises(RecipeError, match="min_score"):
        parse_recipe(base.replace("0.5", "1.5"))
