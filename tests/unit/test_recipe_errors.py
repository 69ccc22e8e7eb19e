"""Recipe validation reports every problem at once, each at its YAML line (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.recipe import RecipeError, parse_recipe
from operators.base import local_path, looks_like_path

HEAD = """\
name: t
input: {path: "x/*.parquet"}
output: {path: out}
steps:
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    return info.value.problems


def test_duplicate_name_is_reported_at_the_second_name_line_with_other_errors():
    text = HEAD + """\
  - op: filter.length
    name: short
    params: {min_words: 1}
  - op: filter.length
    params: {min_words: -1}
  - op: text.normalize
    name: short
"""
    found = problems(text)
    assert found == [
        "9: step 'filter.length' (steps[1]): min_words: Input should be greater than or "
        "equal to 0 (got -1)",
        "11: step 'short' (steps[2]): two steps are named 'short' (steps[0] and steps[2]); "
        "give one a distinct `name:`",
    ]


def test_duplicate_op_without_a_name_is_reported_at_its_op_line():
    text = HEAD + "  - op: text.normalize\n  - op: dedup.exact\n  - op: text.normalize\n"
    (p,) = problems(text)
    assert p.startswith("7: step 'text.normalize' (steps[2]): two steps are named")


def test_structural_errors_do_not_hide_step_errors():
    text = """\
name: t
bogus: 1
input: {path: 3}
steps:
  - op: filter.length
    params: {min_words: -1}
  - op: dedup.exakt
"""
    found = problems(text)
    assert found[:3] == ["1: output: Field required", "2: bogus: Extra inputs are not permitted",
                         "3: input.path: Input should be a valid string"]
    assert found[3].startswith("6: step 'filter.length' (steps[0]): min_words:")
    assert found[4].startswith("7: step 'dedup.exakt' (steps[1]): unknown op 'dedup.exakt'")
    assert len(found) == 5


def test_a_step_with_a_bad_key_still_gets_its_params_checked():
    text = HEAD + "  - op: filter.length\n    nmae: x\n    params: {min_words: -1}\n"
    assert problems(text) == [
        "6: steps.0.nmae: Extra inputs are not permitted",
        "7: step 'filter.length' (steps[0]): min_words: Input should be greater than or equal "
        "to 0 (got -1)",
    ]


def test_steps_that_are_not_a_list_are_one_error():
    (p,) = problems(HEAD.replace("steps:\n", "steps: {op: text.normalize}\n"))
    assert p == "4: steps: Input should be a valid list"


def test_an_operator_constructor_error_is_reported_at_its_step():
    text = HEAD + "  - op: embed\n    params: {column: text}\n  - op: dedup.exakt\n"
    found = problems(text)
    assert found[0].startswith("5: step 'embed' (steps[0]): embed: column 'text' would overwrite")
    assert found[1].startswith("7: step 'dedup.exakt'")


def test_a_missing_embed_model_path_is_named_at_its_line():
    text = HEAD + "  - op: embed\n    params:\n      model: /nonexistent/m\n"
    (p,) = problems(text)
    assert p.startswith("7: step 'embed' (steps[0]): model:")
    assert "directory '/nonexistent/m' does not exist" in p


@pytest.mark.parametrize("model", ["./no-such-model", "~/no-such-model-here", "models/m"])
def test_every_path_like_embed_model_is_checked(model):
    (p,) = problems(HEAD + f"  - op: embed\n    params: {{model: '{model}'}}\n")
    assert p.startswith("6: step 'embed' (steps[0]): model:") and model in p


def test_an_embed_model_directory_must_hold_a_model(tmp_path):
    (p,) = problems(HEAD + f"  - op: embed\n    params: {{model: '{tmp_path}'}}\n")
    assert "holds none of modules.json, config.json" in p
    (tmp_path / "config.json").write_text("{}")
    loaded = parse_recipe(HEAD + f"  - op: embed\n    params: {{model: '{tmp_path}'}}\n")
    assert loaded.operators[0].params.model == str(tmp_path)


def test_embed_model_names_and_the_default_are_not_path_checked():
    from operators.embed.backends import default_model_path

    for params in ("{model: all-MiniLM-L6-v2}", f"{{model: '{default_model_path()}'}}", "{}"):
        loaded = parse_recipe(HEAD + f"  - op: embed\n    params: {params}\n")
        assert loaded.operators[0].name == "embed"


def test_a_missing_quality_model_is_named_at_its_line(tmp_path):
    missing = tmp_path / "no-model"
    text = HEAD + f"  - op: quality.classifier\n    params:\n      model: {missing}\n"
    (p,) = problems(text)
    assert p.startswith("7: step 'quality.classifier' (steps[0]): model:")
    assert f"no quality model at '{missing}'" in p


def test_a_missing_bad_words_file_is_named_at_its_line(tmp_path):
    missing = tmp_path / "words.txt"
    text = HEAD + f"  - op: quality.c4\n    params:\n      bad_words_file: {missing}\n"
    (p,) = problems(text)
    assert p.startswith("7: step 'quality.c4' (steps[0]): bad_words_file:") and str(missing) in p


@pytest.mark.parametrize(("value", "expected"), [
    ("/abs/m", True), ("./m", True), ("../m", True), ("~/m", True), ("org/m", True),
    ("all-MiniLM-L6-v2", False), ("m", False),
])
def test_looks_like_path(value, expected):
    assert looks_like_path(value) is expected


def test_local_path_checks_the_kind(tmp_path: Path):
    check_file = local_path("file").func
    check_dir = local_path("dir").func
    (tmp_path / "f").write_text("x")
    assert check_file(str(tmp_path / "f")) == str(tmp_path / "f")
    assert check_dir(None) is None
    with pytest.raises(ValueError, match="is not a file"):
        check_file(str(tmp_path))
    with pytest.raises(ValueError, match="is not a directory"):
        check_dir(str(tmp_path / "f"))
    with pytest.raises(ValueError, match="file '.*nope' does not exist"):
        check_file(str(tmp_path / "nope"))
