"""The model registry: immutable numbered versions of named models, and aliases that move.

Records live in a SQL database (`database.py`), files in a store (`store.py`). A version is
visible only once both exist: `push` copies the bundle into a staging folder, then, inside one
write transaction, takes the next number, moves the folder into place and inserts the row; if
anything fails the folder goes back and the row is never committed. Version numbers are never
reused, even after `remove`, so `iris:3` means the same files for the registry's whole life.

Every alias change is recorded in `alias_history`, which works as a stack per alias: `promote`
pushes, `rollback` pops back to the version before the last promote, and repeated rollbacks go
further back until only the first promote is left (then `Conflict`: nothing to roll back).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from servekit.bundle import MANIFEST_NAME, Bundle, Manifest, file_digests
from servekit.errors import (
    Conflict,
    InvalidManifest,
    InvalidName,
    ModelNotFound,
    RegistryError,
    TamperedArtifact,
    VersionNotFound,
)
from servekit.refs import LATEST, ModelRef, parse_ref, validate_alias, validate_name
from servekit.registry.database import (
    alias_history,
    aliases,
    as_utc,
    create_schema,
    describe_url,
    make_engine,
    models,
    retry_on_contention,
    utcnow,
    versions,
    write_transaction,
)
from servekit.registry.store import FileStore, safe_relative

__all__ = ["DEFAULT_HOME", "ModelSummary", "RegisteredVersion", "Registry", "default_home"]

DEFAULT_HOME = Path("~/.servekit")
HOME_ENV = "SERVEKIT_HOME"
DATABASE_ENV = "SERVEKIT_DATABASE_URL"
"""A SQLAlchemy URL (e.g. PostgreSQL) shared by several servers, instead of `{home}/registry.db`."""
STORE_ENV = "SERVEKIT_STORE_URL"
"""An fsspec URL (e.g. s3://bucket/models) for the artifacts, instead of `{home}/models`."""
_SHOWN = 20
T = TypeVar("T")
logger = logging.getLogger(__name__)


def default_home() -> Path:
    """`SERVEKIT_HOME` if set, else `~/.servekit`, expanded to an absolute path."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().absolute()


@dataclass(frozen=True)
class RegisteredVersion:
    """One stored version of a model, as the database records it."""

    name: str
    version: int
    format: str
    created_at: datetime
    files: dict[str, str]
    """sha256 recorded at push, by relative path (the artifact included, the manifest not)."""
    manifest: Manifest
    """The stored manifest, with `name` and `version` set."""
    aliases: tuple[str, ...]
    """Aliases currently pointing at this version."""
    path: Path
    """Local folder of the stored bundle (for a remote store, where `Registry.bundle` caches it)."""

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, version=self.version)


@dataclass(frozen=True)
class ModelSummary:
    """One line of `Registry.models()`."""

    name: str
    latest_version: int
    versions: int
    """How many versions are stored."""
    aliases: dict[str, int] = field(default_factory=dict)
    updated_at: datetime | None = None
    """The last push or alias change."""


class Registry:
    """Named, versioned model bundles with aliases, in a SQL database and a file store.

    `home` defaults to `default_home()`; the database to the SQLite file `{home}/registry.db`
    and the store to the folder `{home}/models`. Any SQLAlchemy URL and fsspec URL work too,
    given here or as `SERVEKIT_DATABASE_URL` / `SERVEKIT_STORE_URL` (several servers sharing one
    registry).
    """

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        database_url: str | None = None,
        store_url: str | None = None,
    ) -> None:
        self.home = Path(home).expanduser().absolute() if home is not None else default_home()
        database_url = database_url or os.environ.get(DATABASE_ENV) or None
        store_url = store_url or os.environ.get(STORE_ENV) or None
        self.database_url = database_url or f"sqlite:///{self.home / 'registry.db'}"
        self.store_url = str(store_url) if store_url is not None else str(self.home / "models")
        self.location = str(self.home) if database_url is None else describe_url(self.database_url)
        try:
            self._store = FileStore(self.store_url, cache_dir=self.home / "cache")
            self._engine = make_engine(self.database_url)
        except OSError as exc:
            raise RegistryError(f"cannot create the registry at {self.location}: {exc}") from None
        try:
            create_schema(self._engine)
        except RegistryError:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Registry({self.location!r})"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- push ---------------------------------------------------------------------------------
    def push(self, bundle: Bundle, *, name: str | None = None) -> RegisteredVersion:
        """Store a bundle as the next version of `name` (default: the manifest's name).

        The bundle's files must match its manifest (`TamperedArtifact` otherwise). A version
        number set in the manifest is used if free (`Conflict` if taken).
        """
        model_name = validate_name(name if name is not None else bundle.manifest.name)
        manifest = bundle.manifest
        for relative in manifest.files:
            safe_relative(relative)
            if relative == MANIFEST_NAME:
                raise InvalidManifest(f"{bundle.path / MANIFEST_NAME} lists itself among the files")
        requested = manifest.version
        if requested is not None and requested < 1:
            raise InvalidManifest(f"{bundle.path / MANIFEST_NAME}: version {requested} is not 1 or more")
        bundle.verify()
        try:
            staging = self._store.stage(bundle.path, sorted(manifest.files))
        except OSError as exc:
            raise RegistryError(f"could not copy {bundle.path} into the model store: {exc}") from None
        try:
            digests = file_digests(staging)
            expected = dict(manifest.files)
            if digests != expected:
                changed = sorted(k for k in expected if digests.get(k) != expected[k])
                raise TamperedArtifact(
                    f"{bundle.path / changed[0]} changed while it was being pushed",
                    hint="Push again once nothing is writing to the bundle",
                )
            version = retry_on_contention(
                lambda: self._commit(model_name, manifest, staging, digests),
                what=f"record {model_name!r} in the registry at {self.location}",
            )
            self._store.settle(staging, model_name, version)
        except OSError as exc:
            raise RegistryError(f"could not store {model_name!r} in the model store: {exc}") from None
        finally:
            self._store.discard(staging)
        return self.get(model_name, version)

    def _commit(self, name: str, manifest: Manifest, staging: Path, digests: dict[str, str]) -> int:
        """One attempt: number, manifest, folder and row together, or none of them."""
        published: int | None = None
        try:
            with write_transaction(self._engine) as conn:
                version = self._allocate(conn, name, manifest.version)
                stored = manifest.model_copy(update={"name": name, "version": version, "files": digests})
                Bundle(staging, stored).write_manifest()
                conn.execute(
                    insert(versions).values(
                        name=name,
                        version=version,
                        format=stored.format,
                        created_at=utcnow(),
                        manifest=stored.model_dump_json(),
                        files=json.dumps(digests, sort_keys=True),
                    )
                )
                published = version  # set first: a publish that fails half-way is undone too
                self._store.publish(staging, name, version)
        except BaseException:
            if published is not None:
                self._store.unpublish(staging, name, published)
            raise
        return version

    def _allocate(self, conn: Connection, name: str, requested: int | None) -> int:
        query = select(models.c.last_version).where(models.c.name == name).with_for_update()
        last = conn.execute(query).scalar()
        if last is None:
            conn.execute(insert(models).values(name=name, created_at=utcnow(), last_version=0))
            last = 0
        highest = conn.execute(select(func.max(versions.c.version)).where(versions.c.name == name)).scalar()
        if requested is None:
            number = max(last, highest or 0) + 1
        elif requested in self._numbers(conn, name):
            raise Conflict(
                f"{name}:{requested} already exists in the registry at {self.location}; versions never change",
                hint="Pack without a version to get the next free number",
            )
        else:
            number = requested
        conn.execute(update(models).where(models.c.name == name).values(last_version=max(last, number)))
        return number

    # -- read ---------------------------------------------------------------------------------
    def models(self) -> list[ModelSummary]:
        """Every model with at least one version, by name."""

        def read(conn: Connection) -> list[ModelSummary]:
            counts = conn.execute(
                select(
                    versions.c.name,
                    func.max(versions.c.version),
                    func.count(),
                    func.max(versions.c.created_at),
                ).group_by(versions.c.name)
            ).all()
            by_model: dict[str, dict[str, int]] = {}
            changed: dict[str, datetime] = {}
            for row in conn.execute(select(aliases)).all():
                by_model.setdefault(row.name, {})[row.alias] = row.version
                at = as_utc(row.updated_at)
                changed[row.name] = max(changed.get(row.name, at), at)
            out = []
            for model, latest, count, pushed in counts:
                updated = as_utc(pushed)
                if model in changed:
                    updated = max(updated, changed[model])
                out.append(ModelSummary(model, latest, count, dict(sorted(by_model.get(model, {}).items())), updated))
            return sorted(out, key=lambda s: s.name)

        return self._read(read, "list the models")

    def versions(self, name: str) -> list[RegisteredVersion]:
        """Every stored version of `name`, oldest first; `ModelNotFound` if there is none."""
        validate_name(name)

        def read(conn: Connection) -> list[RegisteredVersion]:
            rows = conn.execute(select(versions).where(versions.c.name == name).order_by(versions.c.version)).all()
            if not rows:
                raise self._model_not_found(name)
            pointing = self._aliases_by_version(conn, name)
            return [self._version(row, pointing) for row in rows]

        return self._read(read, f"list the versions of {name!r}")

    def get(self, name: str, version: int | str | None = None) -> RegisteredVersion:
        """A version by number (int or digits), alias, or `None`/`"latest"` for the highest."""
        validate_name(name)
        selector = _selector(version)

        def read(conn: Connection) -> RegisteredVersion:
            number = self._find(conn, name, selector)
            row = conn.execute(select(versions).where(versions.c.name == name, versions.c.version == number)).one()
            return self._version(row, self._aliases_by_version(conn, name))

        return self._read(read, f"read {name!r}")

    def resolve(self, ref: str | ModelRef) -> RegisteredVersion:
        """The version a reference (`iris`, `iris:2`, `iris@production`) names."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        return self.get(parsed.name, parsed.selector)

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for `name`, by alias."""
        validate_name(name)

        def read(conn: Connection) -> dict[str, int]:
            self._require_model(conn, name)
            return self._alias_map(conn, name)

        return self._read(read, f"read the aliases of {name!r}")

    def bundle(self, rv: RegisteredVersion) -> Bundle:
        """The stored bundle, after checking that nothing in it changed since the push.

        `TamperedArtifact` names the first file that differs from its record, is missing, or
        a manifest that no longer says what was pushed.
        """
        path = self._store.fetch(rv.name, rv.version)
        manifest_file = path / MANIFEST_NAME
        if not path.is_dir():
            raise TamperedArtifact(
                f"the files of {rv.name}:{rv.version} are missing from {path}",
                hint=f"Remove the version (servekit rm {rv.name} {rv.version}) and push it again",
            )
        Bundle(path, rv.manifest).verify(rv.files)
        try:
            stored = Bundle.read(path)
        except InvalidManifest as exc:
            raise TamperedArtifact(f"{manifest_file} changed after it was pushed: {exc.message}") from None
        if stored.manifest.model_dump(mode="json") != rv.manifest.model_dump(mode="json"):
            raise TamperedArtifact(
                f"{manifest_file} changed after it was pushed",
                hint="Restore it, or push the model again as a new version",
            )
        return stored

    # -- aliases ------------------------------------------------------------------------------
    def promote(self, name: str, version: int, alias: str) -> RegisteredVersion:
        """Point `alias` at `version` (creating the alias if needed); the old target is kept
        in the history for `rollback`. Promoting to the version it already has changes nothing.
        """
        validate_name(name)
        validate_alias(alias)
        number = _version_number(version)

        def write() -> None:
            with write_transaction(self._engine) as conn:
                self._find(conn, name, number)
                current = self._alias_target(conn, name, alias)
                if current == number:
                    return
                now = utcnow()
                history = self._history(conn, name, alias)
                if current is not None and (not history or history[-1].version != current):
                    conn.execute(insert(alias_history).values(name=name, alias=alias, version=current, at=now))
                if current is None:
                    conn.execute(insert(aliases).values(name=name, alias=alias, version=number, updated_at=now))
                else:
                    conn.execute(
                        update(aliases)
                        .where(aliases.c.name == name, aliases.c.alias == alias)
                        .values(version=number, updated_at=now)
                    )
                conn.execute(insert(alias_history).values(name=name, alias=alias, version=number, at=now))

        retry_on_contention(write, what=f"point {name}@{alias} at version {number}")
        return self.get(name, number)

    def rollback(self, name: str, alias: str) -> RegisteredVersion:
        """Move `alias` back to where it pointed before the last promote.

        Each rollback undoes one more promote; `Conflict` when the alias has no earlier version.
        """
        validate_name(name)
        validate_alias(alias)

        def write() -> int:
            with write_transaction(self._engine) as conn:
                numbers = self._require_model(conn, name)
                current = self._alias_target(conn, name, alias)
                if current is None:
                    raise self._alias_not_found(conn, name, alias)
                history = self._history(conn, name, alias)
                undone = []
                while history and (history[-1].version == current or history[-1].version not in numbers):
                    undone.append(history.pop().id)
                if not history:
                    raise Conflict(
                        f"nothing to roll back: {name}@{alias} points at version {current} "
                        "and has no earlier version in its history",
                        hint=f"Point it at another version with `servekit promote {name} VERSION --alias {alias}`",
                    )
                target = int(history[-1].version)
                conn.execute(delete(alias_history).where(alias_history.c.id.in_(undone)))
                conn.execute(
                    update(aliases)
                    .where(aliases.c.name == name, aliases.c.alias == alias)
                    .values(version=target, updated_at=utcnow())
                )
                return target

        target = retry_on_contention(write, what=f"roll back {name}@{alias}")
        return self.get(name, target)

    # -- remove -------------------------------------------------------------------------------
    def remove(self, name: str, version: int, *, force: bool = False) -> None:
        """Delete a version's record and files. `Conflict` if an alias points at it, unless
        `force`, which drops those aliases (and their history). Its number is never reused.
        """
        validate_name(name)
        number = _version_number(version)

        def write() -> None:
            with write_transaction(self._engine) as conn:
                self._find(conn, name, number)
                pointing = sorted(a for a, v in self._alias_map(conn, name).items() if v == number)
                if pointing and not force:
                    listed = ", ".join(f"{name}@{a}" for a in pointing)
                    raise Conflict(
                        f"cannot remove {name}:{number}: {listed} point(s) at it",
                        hint="Promote another version to that alias first, or force the removal to drop the alias",
                    )
                of_model = alias_history.c.name == name
                if pointing:
                    conn.execute(delete(aliases).where(aliases.c.name == name, aliases.c.alias.in_(pointing)))
                    conn.execute(delete(alias_history).where(of_model, alias_history.c.alias.in_(pointing)))
                conn.execute(delete(alias_history).where(of_model, alias_history.c.version == number))
                conn.execute(delete(versions).where(versions.c.name == name, versions.c.version == number))

        retry_on_contention(write, what=f"remove {name}:{number}")
        try:
            self._store.delete(name, number)
        except OSError as exc:  # the record is gone; a leftover folder is replaced if ever reused
            logger.warning("removed %s:%s but could not delete its files: %s", name, number, exc)

    # -- helpers ------------------------------------------------------------------------------
    def _read(self, action: Callable[[Connection], T], what: str) -> T:
        def run() -> T:
            with self._engine.connect() as conn:
                return action(conn)

        return retry_on_contention(run, what=f"{what} in the registry at {self.location}")

    def _numbers(self, conn: Connection, name: str) -> list[int]:
        query = select(versions.c.version).where(versions.c.name == name).order_by(versions.c.version)
        return list(conn.execute(query).scalars())

    def _require_model(self, conn: Connection, name: str) -> list[int]:
        numbers = self._numbers(conn, name)
        if not numbers:
            raise self._model_not_found(name)
        return numbers

    def _find(self, conn: Connection, name: str, selector: int | str | None) -> int:
        """The version number a selector names, or the right NotFound."""
        numbers = self._require_model(conn, name)
        if selector is None:
            return numbers[-1]
        if isinstance(selector, int):
            if selector not in numbers:
                raise VersionNotFound(
                    f"model {name!r} has no version {selector}; its versions are {_listing(numbers)}",
                    hint=f"List them with `servekit models {name}`",
                )
            return selector
        target = self._alias_target(conn, name, selector)
        if target is None:
            raise self._alias_not_found(conn, name, selector)
        return target

    def _alias_target(self, conn: Connection, name: str, alias: str) -> int | None:
        query = select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)
        return conn.execute(query).scalar()

    def _alias_map(self, conn: Connection, name: str) -> dict[str, int]:
        query = select(aliases.c.alias, aliases.c.version).where(aliases.c.name == name).order_by(aliases.c.alias)
        return {alias: version for alias, version in conn.execute(query).all()}

    def _aliases_by_version(self, conn: Connection, name: str) -> dict[int, tuple[str, ...]]:
        out: dict[int, tuple[str, ...]] = {}
        for alias, version in self._alias_map(conn, name).items():
            out[version] = (*out.get(version, ()), alias)
        return out

    def _history(self, conn: Connection, name: str, alias: str) -> list[Row[Any]]:
        query = (
            select(alias_history.c.id, alias_history.c.version)
            .where(alias_history.c.name == name, alias_history.c.alias == alias)
            .order_by(alias_history.c.id)
        )
        return list(conn.execute(query).all())

    def _version(self, row: Row[Any], pointing: dict[int, tuple[str, ...]]) -> RegisteredVersion:
        try:
            manifest = Manifest.model_validate_json(row.manifest)
        except ValidationError as exc:
            raise RegistryError(
                f"the registry's record of {row.name}:{row.version} is not a valid manifest: {exc.errors()[0]['msg']}"
            ) from None
        return RegisteredVersion(
            name=row.name,
            version=row.version,
            format=row.format,
            created_at=as_utc(row.created_at),
            files=json.loads(row.files),
            manifest=manifest,
            aliases=pointing.get(row.version, ()),
            path=self._store.local_path(row.name, row.version),
        )

    def _model_not_found(self, name: str) -> ModelNotFound:
        return ModelNotFound(
            f"no model named {name!r} in the registry at {self.location}",
            hint="List models with `servekit models`",
        )

    def _alias_not_found(self, conn: Connection, name: str, alias: str) -> VersionNotFound:
        known = self._alias_map(conn, name)
        listed = ", ".join(f"{a} (version {v})" for a, v in known.items()) or "none"
        return VersionNotFound(
            f"model {name!r} has no alias {alias!r}; its aliases are: {listed}",
            hint=f"Point an alias at a version with `servekit promote {name} VERSION --alias {alias}`",
        )


def _selector(version: int | str | None) -> int | str | None:
    """Normalize `get`'s `version`: an int, an alias, or `None` for the latest."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise InvalidName(f"a version is a number or an alias, got {type(version).__name__}")
    if isinstance(version, int):
        return version
    if version.isascii() and version.isdigit():
        return int(version)
    if version == LATEST:
        return None
    return validate_alias(version)


def _version_number(version: object) -> int:
    if isinstance(version, str) and version.isascii() and version.isdigit():
        return int(version)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidName(f"a version is a whole number, got {version!r}")
    return version


def _listing(numbers: list[int]) -> str:
    if len(numbers) <= _SHOWN:
        return ", ".join(map(str, numbers))
    return ", ".join(map(str, numbers[: _SHOWN // 2])) + ", …, " + ", ".join(map(str, numbers[-_SHOWN // 2 :]))
