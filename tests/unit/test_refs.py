from __future__ import annotations

import pytest

from servekit.errors import InvalidName
from servekit.refs import ModelRef, parse_ref, validate_alias, validate_name


@pytest.mark.parametrize("name", ["iris", "a", "9", "Iris_v2", "churn-model.2024", "x" * 64, "a.b-c_d"])
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "is empty"),
        ("x" * 65, "65 characters, more than 64"),
        ("my model", "whitespace"),
        ("tab\tname", "whitespace"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".hidden", "starts with '.'"),
        ("-x", "starts with '-'"),
        ("_x", "starts with '_'"),
        ("iris:2", "contains ':'"),
        ("iris@prod", "contains '@'"),
        ("modèle", "contains 'è'"),
    ],
)
def test_invalid_names_say_which_rule_broke(name: str, rule: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_name(name)
    assert rule in info.value.message
    assert "letters, digits" in (info.value.hint or "")


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(InvalidName, match="must be a string, got int"):
        validate_name(3)


def test_aliases_follow_the_name_rules_and_are_never_all_digits() -> None:
    assert validate_alias("production") == "production"
    assert validate_alias("v2") == "v2"
    with pytest.raises(InvalidName, match="all digits"):
        validate_alias("42")
    with pytest.raises(InvalidName, match="reserved"):
        validate_alias("latest")
    with pytest.raises(InvalidName, match="the alias 'a/b' contains a path separator"):
        validate_alias("a/b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris", ModelRef("iris")),
        ("iris:3", ModelRef("iris", version=3)),
        ("iris:0012", ModelRef("iris", version=12)),
        ("iris@production", ModelRef("iris", alias="production")),
        ("iris@latest", ModelRef("iris")),
        ("churn.v2@staging-eu", ModelRef("churn.v2", alias="staging-eu")),
    ],
)
def test_parse_ref_accepts_the_three_forms(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["iris", "iris:3", "iris@production", "a.b-c:12"])
def test_str_round_trips(text: str) -> None:
    ref = parse_ref(text)
    assert str(ref) == text
    assert parse_ref(str(ref)) == ref


def test_selector_is_what_registry_get_takes() -> None:
    assert parse_ref("iris").selector is None
    assert parse_ref("iris:3").selector == 3
    assert parse_ref("iris@production").selector == "production"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the model name is empty"),
        ("iris:", "version ''"),
        ("iris:x", "version 'x'"),
        ("iris:0", "version '0'"),
        ("iris:-1", "version '-1'"),
        ("iris@", "the alias is empty"),
        ("iris:2@prod", "not a model reference"),
        ("iris@a@b", "not a model reference"),
        ("a/b:2", "path separator"),
        ("../iris", "path separator"),
        ("..:2", "'..'"),
        ("@production", "the model name is empty"),
        (" iris", "whitespace"),
    ],
)
def test_bad_references_show_the_accepted_forms(text: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as info:
        parse_ref(text)
    assert fragment in info.value.message
    assert "NAME:VERSION" in (info.value.hint or "")


def test_an_all_digit_alias_points_to_the_version_syntax() -> None:
    with pytest.raises(InvalidName, match="for version 3 write iris:3"):
        parse_ref("iris@3")


def test_a_ref_cannot_have_both_a_version_and_an_alias() -> None:
    with pytest.raises(InvalidName, match="not both"):
        ModelRef("iris", version=1, alias="production")
