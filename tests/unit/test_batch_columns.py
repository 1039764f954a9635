"""`servekit.batch.columns`: features matched by name, id and kept columns passed through."""

from __future__ import annotations

import pytest

from servekit.batch.columns import plan_columns
from servekit.batch.inputs import InputFile
from servekit.errors import InvalidInput
from servekit.signature import Feature, Signature

NAMED = Signature((Feature("a"), Feature("b")), input_kind="frame", named=True)
UNNAMED = Signature.positional(2)


def files(*headers: tuple[str, ...]) -> list[InputFile]:
    return [InputFile(f"/data/{i}.csv", "csv", 10, "0", header) for i, header in enumerate(headers)]


def test_features_by_name_extra_columns_ignored_id_kept() -> None:
    plan = plan_columns(NAMED, files(("b", "ID", "a", "noise")))
    assert plan.features == ("a", "b") and plan.passthrough == ("ID",) and plan.id_column == "ID"
    assert not plan.positional and plan.needed == ("a", "b", "ID")


def test_keep_and_an_explicit_id() -> None:
    plan = plan_columns(NAMED, files(("key", "a", "b", "when", "id")), keep=["when", "a", "when"], id_column="key")
    assert plan.passthrough == ("key", "when", "a") and plan.id_column == "key"
    assert plan.needed == ("a", "b", "key", "when")


def test_a_model_without_feature_names_reads_the_columns_in_order() -> None:
    plan = plan_columns(UNNAMED, files(("id", "height", "width")))
    assert plan.positional and plan.features == ("height", "width")
    with pytest.raises(InvalidInput, match=r"lacks the feature column\(s\) x0, x1") as info:
        plan_columns(UNNAMED, files(("height", "width", "depth")))
    assert "read in order" in info.value.detail


@pytest.mark.parametrize(
    ("headers", "options", "message"),
    [
        ((("a", "c"),), {}, "0.csv lacks the feature column.s. b; the model expects a, b"),
        ((("a", "b"),), {"id_column": "key"}, "--id key: 0.csv has no such column"),
        ((("a", "b", "when"), ("a", "b")), {"keep": ["when"]}, "1.csv lacks the kept column.s. when"),
        ((("a", "b", "c"), ("a", "c")), {}, "1.csv lacks the feature column.s. b"),
        ((("a", "b", "prediction"),), {"keep": ["prediction"]}, "would clash with the output's own columns"),
    ],
)
def test_columns_that_do_not_fit_say_which(headers: tuple, options: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_columns(NAMED, files(*headers), reserved=["prediction"], **options)
