"""Recipe validation: every error names the step and the YAML line."""

from __future__ import annotations

import pytest

from curate.recipe import RecipeError, apply_overrides, parse_recipe

GOOD = """\
name: t
input: {path: "x/*.parquet"}
output: {path: out}
steps:
  - op: text.normalize
  - op: filter.length
    name: short
    params:
      min_words: 5
"""


def problems(text: str, sets: list[str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml", sets)
    return info.value.problems


def test_good_recipe_builds_operators():
    loaded = parse_recipe(GOOD)
    assert [op.name for op in loaded.operators] == ["text.normalize", "filter.length"]
    assert loaded.operators[1].params.min_words == 5
    assert [s.name for s in loaded.recipe.steps] == ["text.normalize", "short"]


def test_unknown_op_suggests_closest_with_line():
    (p,) = problems(GOOD.replace("op: filter.length", "op: filter.lenght"))
    assert p.startswith("6: step 'short' (steps[1])")
    assert "unknown op 'filter.lenght'" in p and "did you mean 'filter.length'" in p


def test_wrong_param_type_points_at_param_line():
    (p,) = problems(GOOD.replace("min_words: 5", "min_words: lots"))
    assert p.startswith("9: step 'short'")
    assert "min_words" in p and "'lots'" in p


def test_out_of_range_value_points_at_param_line():
    (p,) = problems(GOOD.replace("min_words: 5", "min_words: -3"))
    assert p.startswith("9: step 'short'") and "greater than or equal to 0" in p


def test_unknown_param_is_an_error():
    (p,) = problems(GOOD.replace("min_words: 5", "min_wrds: 5"))
    assert p.startswith("9:") and "min_wrds" in p and "Extra inputs" in p


def test_cross_field_bounds():
    (p,) = problems(GOOD.replace("min_words: 5", "min_words: 5\n      max_words: 2"))
    assert "max_words (2) is below min_words (5)" in p


def test_recipe_level_errors_have_lines():
    text = GOOD.replace('output: {path: out}', 'output: {path: out, rows_per_shard: 0}')
    (p,) = problems(text)
    assert p.startswith("3: output.rows_per_shard")


def test_invalid_yaml_reports_line():
    (p,) = problems(GOOD + "  - op: [unclosed\n")
    assert "invalid YAML" in p and p.split(":")[0].isdigit()


def test_duplicate_step_names_are_refused():
    text = GOOD + "  - op: text.normalize\n"
    assert any("two steps are named 'text.normalize'" in p for p in problems(text))


def test_every_problem_is_reported_at_once():
    text = GOOD.replace("op: text.normalize", "op: nope").replace("min_words: 5", "min_words: x")
    assert len(problems(text)) == 2


def test_set_overrides_by_step_name_and_op():
    loaded = parse_recipe(GOOD, sets=["steps.short.params.min_words=7",
                                      "steps.text.normalize.params.form=NFKC"])
    assert loaded.operators[1].params.min_words == 7
    assert loaded.operators[0].params.form == "NFKC"


def test_set_to_unknown_step_is_explained():
    with pytest.raises(RecipeError, match="matches no step"):
        parse_recipe(GOOD, sets=["steps.nope.params.x=1"])


def test_set_value_is_validated_like_yaml():
    (p,) = problems(GOOD, sets=["steps.short.params.min_words=-1"])
    assert "step 'short'" in p and "greater than or equal to 0" in p


def test_apply_overrides_parses_yaml_values():
    raw = {"output": {"path": "a"}}
    apply_overrides(raw, ["output.rows_per_shard=10", "output.path=b"])
    assert raw["output"] == {"path": "b", "rows_per_shard": 10}
