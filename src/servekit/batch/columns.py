"""Which input columns feed the model and which are copied to the output.

Features are matched by name against the model's signature. A model that does not know its
feature names (trained on a bare array) takes the input's columns in order, when the input has
exactly as many (besides the id and `--keep` columns). Extra columns are ignored unless kept; a
column named `id` is kept by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from servekit.batch.inputs import InputFile
from servekit.errors import InvalidInput
from servekit.signature import Signature

__all__ = ["DEFAULT_ID", "ColumnPlan", "plan_columns"]

DEFAULT_ID = "id"
"""A column with this name (any case) is copied to the output unless `--id` names another."""
_POSITIONAL_NAME = re.compile(r"x\d+")
_SHOWN = 8


@dataclass(frozen=True)
class ColumnPlan:
    """The input column of each signature feature, and the columns copied to the output."""

    features: tuple[str, ...]
    """One input column per signature feature, in the signature's order."""
    passthrough: tuple[str, ...] = ()
    """Copied to the output before the predictions: the id column first, then `--keep`."""
    id_column: str | None = None
    positional: bool = False
    """The model does not know its feature names: the input's columns were taken in order."""

    @property
    def needed(self) -> tuple[str, ...]:
        """Every input column the job reads, each once."""
        return tuple(dict.fromkeys((*self.features, *self.passthrough)))


def plan_columns(
    signature: Signature,
    files: Sequence[InputFile],
    *,
    keep: Iterable[str] = (),
    id_column: str | None = None,
    reserved: Iterable[str] = (),
) -> ColumnPlan:
    """Match the input's columns against `signature`; `InvalidInput` naming what is missing.

    `reserved` are the output's own column names (`prediction`, …), which a kept column may not take.
    """
    with_columns = [f for f in files if f.columns]
    if not with_columns:
        return ColumnPlan(tuple(signature.names))
    first = with_columns[0]
    columns = first.columns
    kept = list(dict.fromkeys(keep))
    if id_column is not None and id_column not in columns:
        raise InvalidInput(f"--id {id_column}: {first.name} has no such column", hint=f"Its columns: {_short(columns)}")
    found_id = id_column or next((c for c in columns if c.lower() == DEFAULT_ID), None)
    passthrough = tuple(dict.fromkeys([*([found_id] if found_id else []), *kept]))
    clashes = sorted(set(passthrough) & set(reserved))
    if clashes:
        raise InvalidInput(
            f"the kept column(s) {', '.join(clashes)} would clash with the output's own columns",
            hint="Rename the column in the input",
        )
    features, positional = _features(signature, columns, passthrough, first)
    plan = ColumnPlan(features, passthrough, found_id, positional)
    for file in with_columns:
        missing = [c for c in plan.needed if c not in file.columns]
        if missing:
            what = "feature" if set(missing) & set(features) else "kept"
            raise InvalidInput(
                f"{file.name} lacks the {what} column(s) {_short(missing)}",
                hint=f"The model expects {_short(signature.names)}; kept columns must exist in every file",
            )
    return plan


def _features(
    signature: Signature, columns: Sequence[str], passthrough: Sequence[str], first: InputFile
) -> tuple[tuple[str, ...], bool]:
    names = signature.names
    missing = [n for n in names if n not in columns]
    if not missing:
        return tuple(names), False
    others = [c for c in columns if c not in passthrough]
    unnamed = not signature.named and all(_POSITIONAL_NAME.fullmatch(n) for n in names)
    if unnamed and len(others) == signature.n_features:
        return tuple(others), True
    hint = "Name the input's columns after the model's features"
    if unnamed:
        hint += (
            f"; this model does not know its feature names, so an input with exactly {signature.n_features} "
            "columns (besides the id and --keep columns) is read in order"
        )
    raise InvalidInput(
        f"{first.name} lacks the feature column(s) {_short(missing)}; the model expects {_short(names)}", hint=hint
    )


def _short(names: Sequence[str]) -> str:
    if len(names) <= _SHOWN:
        return ", ".join(names)
    return ", ".join(names[:_SHOWN]) + f", … ({len(names)} in all)"
