"""Model names and references to one version of a model.

A name (model or alias) is 1-64 characters of ``A-Z a-z 0-9 . _ -`` starting with a letter or a
digit, so it is always safe as a folder name and in a URL path. An alias is never all digits,
so ``3`` always means a version. A reference takes one of three forms:

    iris              the latest version (the highest number), never an alias implicitly
    iris:3            version 3
    iris@production   the version the alias ``production`` points at

``latest`` is reserved: ``iris@latest`` is the same as ``iris`` and no alias may take that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servekit.errors import InvalidName

__all__ = [
    "LATEST",
    "MAX_NAME_LENGTH",
    "ModelRef",
    "parse_ref",
    "validate_alias",
    "validate_name",
]

MAX_NAME_LENGTH = 64
LATEST = "latest"
"""Reserved selector meaning the highest version; not allowed as an alias name."""

_ALLOWED = re.compile(r"[A-Za-z0-9._-]+")
_FORMS = "use NAME (latest version), NAME:VERSION (e.g. iris:3) or NAME@ALIAS (e.g. iris@production)"


def validate_name(name: object, *, kind: str = "model name") -> str:
    """Return `name` unchanged if it is an acceptable name, else raise `InvalidName` saying why."""
    if not isinstance(name, str):
        raise InvalidName(f"a {kind} must be a string, got {type(name).__name__}")
    shown = repr(name)
    rules = "names are 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
    if not name:
        raise InvalidName(f"the {kind} is empty", hint=rules)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"the {kind} {shown} has {len(name)} characters, more than {MAX_NAME_LENGTH}", hint=rules)
    if any(c.isspace() for c in name):
        raise InvalidName(f"the {kind} {shown} contains whitespace", hint=rules)
    if "/" in name or "\\" in name:
        raise InvalidName(f"the {kind} {shown} contains a path separator ('/' or '\\')", hint=rules)
    if ".." in name:
        raise InvalidName(f"the {kind} {shown} contains '..'", hint=rules)
    if name.startswith("."):
        raise InvalidName(f"the {kind} {shown} starts with '.'", hint=rules)
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
        raise InvalidName(f"the {kind} {shown} contains {', '.join(map(repr, bad))}", hint=rules)
    if not name[0].isalnum():
        raise InvalidName(f"the {kind} {shown} starts with {name[0]!r}", hint=rules)
    return name


def validate_alias(alias: object) -> str:
    """Like `validate_name`, and an alias is never all digits (that is a version) nor `latest`."""
    validate_name(alias, kind="alias")
    assert isinstance(alias, str)
    if alias.isdigit():
        raise InvalidName(
            f"the alias {alias!r} is all digits, which would read as a version number",
            hint="choose a name with a letter in it, e.g. production or staging",
        )
    if alias == LATEST:
        raise InvalidName(f"{LATEST!r} is reserved for the highest version and cannot be an alias")
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A model name with at most one of a version number or an alias; neither means latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.alias is not None:
            raise InvalidName(f"a reference has a version or an alias, not both; {_FORMS}")

    @property
    def selector(self) -> int | str | None:
        """What `Registry.get` takes as `version`: the number, the alias, or `None` for latest."""
        return self.version if self.version is not None else self.alias

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse `name`, `name:3` or `name@alias`; `InvalidName` showing the accepted forms."""
    if not isinstance(text, str):
        raise InvalidName(f"a model reference must be a string, got {type(text).__name__}")
    if text.count(":") + text.count("@") > 1:
        raise InvalidName(f"{text!r} is not a model reference", hint=_FORMS)
    if ":" in text:
        name, _, number = text.partition(":")
        if not number.isascii() or not number.isdigit() or int(number) < 1:
            raise InvalidName(f"{text!r} has version {number!r}; a version is a whole number from 1", hint=_FORMS)
        return ModelRef(_name_part(name, text), version=int(number))
    if "@" in text:
        name, _, alias = text.partition("@")
        name = _name_part(name, text)
        if alias.isascii() and alias.isdigit():
            raise InvalidName(
                f"{text!r} names an alias made of digits", hint=f"for version {alias} write {name}:{alias}"
            )
        if alias == LATEST:
            return ModelRef(name)
        try:
            validate_alias(alias)
        except InvalidName as exc:
            raise InvalidName(f"{text!r}: {exc.message}", hint=_FORMS) from None
        return ModelRef(name, alias=alias)
    return ModelRef(_name_part(text, text))


def _name_part(name: str, text: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise InvalidName(f"{text!r}: {exc.message}", hint=_FORMS) from None
