"""API keys: creation and storage (`KeyStore`), and the per-request check (`Authenticator`).

A key reads `sk_<id>_<secret>`: `id` is 8 letters and digits that find the key's row, `secret` 43
url-safe characters (256 random bits from `secrets`). The database keeps the id, the name, the
scopes, the dates and a SHA-256 of the whole key, never the key itself; it is shown once, at creation.
A plain SHA-256 is enough because the keys are random: a slow, salted hash (bcrypt, argon2) protects
guessable passwords against dictionary attacks, and there is no dictionary for 256 random bits. It
also keeps a check to one fast hash, which matters on the server's hot path.

Static keys come from settings (`SERVEKIT_API_KEYS="key1,key2:admin"`); they are kept hashed in
memory too. A key, static or stored, never appears in a message or a log line: only its id does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, insert, select, update

from servekit.errors import Conflict, Forbidden, InvalidInput, NotFound, RegistryError, Unauthorized
from servekit.refs import validate_name
from servekit.registry.database import (
    api_keys,
    as_utc,
    create_schema,
    describe_url,
    make_engine,
    retry_on_contention,
    utcnow,
    write_transaction,
)

__all__ = [
    "ADMIN",
    "PREDICT",
    "SCOPES",
    "Authenticator",
    "Forbidden",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "StaticKey",
    "Unauthorized",
    "require",
    "static_keys",
]

PREDICT = "predict"
ADMIN = "admin"
SCOPES = frozenset({PREDICT, ADMIN})
DEFAULT_SCOPES = frozenset({PREDICT})
PREFIX = "sk_"
ID_LENGTH = 8
SECRET_BYTES = 32
MIN_STATIC_LENGTH = 16
MAX_KEY_BYTES = 256
"""Longer header values are refused before they are hashed."""
DEFAULT_CACHE_TTL_S = 5.0
DEFAULT_CACHE_SIZE = 10_000
MISS_TTL_S = 1.0
"""Longest an unknown key is remembered as unknown, so a key just created works within a second."""

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_CHARS = frozenset(_ID_ALPHABET)
_SECRET_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_SECRET_LENGTH = len(secrets.token_urlsafe(SECRET_BYTES))
_KEY_LENGTH = len(PREFIX) + ID_LENGTH + 1 + _SECRET_LENGTH
_SEND_HINT = "Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: a stored key's id (or `static:<n>`) and its scopes."""

    id: str
    scopes: frozenset[str]
    name: str | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def require(principal: Principal, scope: str) -> None:
    """`Forbidden` unless the principal holds `scope`; `admin` does not imply `predict`."""
    if scope not in principal.scopes:
        held = ", ".join(sorted(principal.scopes)) or "none"
        raise Forbidden(
            f"API key {principal.id} lacks the {scope!r} scope (it has: {held})",
            hint=f"Use a key created with `servekit keys create NAME --scope {scope}`",
        )


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as `KeyStore` lists it: everything but the key (and its hash)."""

    id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def principal(self) -> Principal:
        return Principal(self.id, self.scopes, self.name)


@dataclass(frozen=True, slots=True)
class StaticKey:
    """A key given in settings, kept as its SHA-256 only."""

    id: str
    scopes: frozenset[str]
    digest: bytes

    def __repr__(self) -> str:
        return f"StaticKey({self.id!r}, scopes={sorted(self.scopes)})"


def hash_key(key: str | bytes) -> str:
    """Hex SHA-256 of a whole key, as stored."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def parse_scopes(values: Iterable[str]) -> frozenset[str]:
    """Scope names (each may join several with `+`) as a set; `InvalidInput` for unknown ones."""
    scopes = frozenset(s.strip().lower() for value in values for s in value.split("+") if s.strip())
    unknown = sorted(scopes - SCOPES)
    if unknown:
        raise InvalidInput(f"unknown scope {', '.join(map(repr, unknown))}", hint=f"Use {PREDICT!r}, {ADMIN!r} or both")
    if not scopes:
        raise InvalidInput("no scope given", hint=f"Use {PREDICT!r}, {ADMIN!r} or both")
    return scopes


def static_keys(values: Sequence[str]) -> list[StaticKey]:
    """Keys from settings: each value is `KEY` or `KEY:SCOPES` (`predict`, `admin`, `predict+admin`;
    default `predict`); a value may hold several, comma-separated, as `SERVEKIT_API_KEYS` does.

    A key must be at least 16 printable ASCII characters without spaces or commas. A key that
    contains `:` needs an explicit scope suffix, since only the text after the last `:` is read
    as scopes. The n-th key (from 1) is identified as `static:<n>`.
    """
    keys: list[StaticKey] = []
    seen: dict[bytes, str] = {}
    for entry in (part.strip() for value in values for part in value.split(",")):
        if not entry:
            continue
        position = len(keys) + 1
        secret, sep, suffix = entry.rpartition(":")
        if not sep:
            secret, scopes = entry, DEFAULT_SCOPES
        else:
            try:
                scopes = parse_scopes([suffix])
            except InvalidInput:  # not echoed: the text after the `:` may be part of the key
                raise InvalidInput(
                    f"API key static:{position} ends in an unknown scope after its last ':'",
                    hint="Scopes are predict, admin or predict+admin; a key containing ':' needs one, e.g. KEY:predict",
                ) from None
        if len(secret) < MIN_STATIC_LENGTH or not secret.isascii() or not secret.isprintable() or " " in secret:
            raise InvalidInput(
                f"API key static:{position} is not usable: a key is at least {MIN_STATIC_LENGTH} printable "
                "ASCII characters without spaces",
                hint="Create one with `servekit keys create NAME`, or generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        digest = hashlib.sha256(secret.encode()).digest()
        if digest in seen:
            raise InvalidInput(f"API keys {seen[digest]} and static:{position} are the same key")
        seen[digest] = f"static:{position}"
        keys.append(StaticKey(f"static:{position}", scopes, digest))
    return keys


def split_key(presented: str) -> str | None:
    """The id of a well-formed `sk_<id>_<secret>` key, else `None`."""
    if len(presented) != _KEY_LENGTH or not presented.startswith(PREFIX):
        return None
    key_id = presented[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    secret = presented[len(PREFIX) + ID_LENGTH + 1 :]
    if presented[len(PREFIX) + ID_LENGTH] != "_" or not _ID_CHARS.issuperset(key_id):
        return None
    return key_id if _SECRET_CHARS.issuperset(secret) else None


class KeyStore:
    """API keys in a SQL database (the registry's by default): create, list, revoke, look up."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = describe_url(url)
        try:
            self._engine = make_engine(url)
        except OSError as exc:
            raise RegistryError(f"cannot open the key database {self.location}: {exc}") from None
        try:
            create_schema(self._engine)
        except RegistryError:
            self._engine.dispose()
            raise

    @classmethod
    def at_home(cls, home: Path | str | None = None) -> KeyStore:
        """The store in the registry database of `home` (default: `$SERVEKIT_HOME` or ~/.servekit)."""
        from servekit.registry.registry import default_home

        base = Path(home).expanduser().absolute() if home is not None else default_home()
        return cls(f"sqlite:///{base / 'registry.db'}")

    def __repr__(self) -> str:
        return f"KeyStore({self.location!r})"

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def create(self, name: str, scopes: Iterable[str] = (PREDICT,)) -> tuple[KeyRecord, str]:
        """A new key: its record and the key itself, which is not kept and cannot be shown again.

        `Conflict` if a key not yet revoked already has this name.
        """
        validate_name(name, kind="key name")
        granted = parse_scopes(scopes)

        def write() -> tuple[KeyRecord, str]:
            key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            record = KeyRecord(key_id, name, granted, utcnow())
            with write_transaction(self._engine) as conn:
                taken = conn.execute(select(api_keys.c.id).where(_active_named(name))).scalar()
                if taken is not None:
                    raise Conflict(
                        f"an API key named {name!r} already exists (id {taken})",
                        hint=f"Revoke it first with `servekit keys revoke {name}`, or pick another name",
                    )
                conn.execute(
                    insert(api_keys).values(
                        id=key_id,
                        name=name,
                        scopes=" ".join(sorted(granted)),
                        key_hash=hash_key(key),
                        created_at=record.created_at,
                    )
                )
            return record, key

        # A lost race (same id, same name at once) is an IntegrityError: the retry draws a new id
        # and finds the other process's key by name.
        return retry_on_contention(write, what=f"create the API key {name!r} in {self.location}")

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""

        def read() -> list[KeyRecord]:
            with self._engine.connect() as conn:
                rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
            return [_record(row) for row in rows]

        return retry_on_contention(read, what=f"list the API keys in {self.location}")

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke a key by id, or the unrevoked key of that name; returns it as revoked.

        A whole key works too. `NotFound` if no key matches; `Conflict` if it is already revoked.
        """
        whole_key = split_key(id_or_name)
        # A pasted key is never echoed: messages name its id, or nothing.
        shown = f"id {whole_key!r}" if whole_key else f"id or name {id_or_name!r}"
        if not whole_key and (len(id_or_name) > 64 or not id_or_name.isprintable()):
            shown = "that id or name"

        def write() -> KeyRecord:
            with write_transaction(self._engine) as conn:
                row = conn.execute(select(api_keys).where(api_keys.c.id == (whole_key or id_or_name))).first()
                if whole_key and row is not None and not hmac.compare_digest(row.key_hash, hash_key(id_or_name)):
                    row = None
                if row is None and not whole_key:
                    row = conn.execute(select(api_keys).where(_active_named(id_or_name))).first()
                    if row is None and conn.execute(select(api_keys.c.id).where(api_keys.c.name == id_or_name)).first():
                        raise Conflict(f"every API key named {id_or_name!r} is already revoked")
                if row is None:
                    raise NotFound(f"no API key with the {shown}", hint="List keys with `servekit keys list`")
                if row.revoked_at is not None:
                    raise Conflict(f"API key {row.id} ({row.name}) is already revoked")
                now = utcnow()
                conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=now))
            record = _record(row)
            return KeyRecord(record.id, record.name, record.scopes, record.created_at, now)

        return retry_on_contention(write, what=f"revoke an API key in {self.location}")

    def lookup(self, presented: str) -> KeyRecord | None:
        """The unrevoked stored key `presented` is, or `None`. The hashes are compared in constant time."""
        key_id = split_key(presented)
        if key_id is None:
            return None

        def read() -> Row[Any] | None:
            with self._engine.connect() as conn:
                return conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()

        row = retry_on_contention(read, what=f"look up an API key in {self.location}")
        if row is None or not hmac.compare_digest(row.key_hash, hash_key(presented)):
            return None
        return _record(row) if row.revoked_at is None else None


def _active_named(name: str) -> Any:
    return (api_keys.c.name == name) & api_keys.c.revoked_at.is_(None)


def _record(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
    )


class Authenticator:
    """Checks the API key of each request against static keys and, if given, a `KeyStore`.

    `check()` runs on the server's hot path: a request costs one SHA-256 and a dict look-up once
    its key is cached. Stored keys are cached by hash for `cache_ttl_s`, so a revoked key stops
    working within that time; unknown keys are remembered for at most a second. Both caches are
    bounded (the oldest entries go first), and a flood of wrong keys cannot push valid ones out.
    Meant for one event loop or one thread; `check_async` does database look-ups in a thread.
    """

    def __init__(
        self,
        static_keys: Sequence[StaticKey] = (),
        store: KeyStore | None = None,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl_s < 0 or cache_size < 1:
            raise InvalidInput("the API key cache needs cache_ttl_s >= 0 and cache_size >= 1")
        self._static = tuple((k.digest, Principal(k.id, k.scopes)) for k in static_keys)
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.miss_ttl_s = min(cache_ttl_s, MISS_TTL_S)
        self.cache_size = cache_size
        self._clock = clock
        self._hits: dict[bytes, tuple[Principal, float]] = {}
        self._misses: dict[bytes, float] = {}

    def __repr__(self) -> str:
        return f"Authenticator(static={len(self._static)}, store={self.store!r}, cache_ttl_s={self.cache_ttl_s})"

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        """The principal of a request's raw ASGI headers; `Unauthorized` if there is no valid key."""
        key, digest = _presented(headers)
        found = self._known(digest)
        if found is _MISSING:
            record = self.store.lookup(key.decode("ascii")) if self.store is not None else None
            found = self._remember(digest, record)
        return self._accept(found)

    async def check_async(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        """`check`, with a database look-up (a cache miss) run in a thread off the event loop."""
        key, digest = _presented(headers)
        found = self._known(digest)
        if found is _MISSING:
            store = self.store
            record = await asyncio.to_thread(store.lookup, key.decode("ascii")) if store is not None else None
            found = self._remember(digest, record)
        return self._accept(found)

    def clear(self) -> None:
        """Forget every cached look-up (e.g. right after revoking a key)."""
        self._hits.clear()
        self._misses.clear()

    def _known(self, digest: bytes) -> object:
        """A static or cached principal, `None` for a recent miss, else `_MISSING`."""
        found: Principal | None = None
        for candidate, principal in self._static:  # every one compared: no early exit to time
            if hmac.compare_digest(candidate, digest):
                found = principal
        if found is not None:
            return found
        now = self._clock()
        hit = self._hits.get(digest)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._hits[digest]
        missed = self._misses.get(digest)
        if missed is not None:
            if missed > now:
                return None
            del self._misses[digest]
        return _MISSING

    def _remember(self, digest: bytes, record: KeyRecord | None) -> Principal | None:
        now = self._clock()
        if record is None:
            _put(self._misses, digest, now + self.miss_ttl_s, self.cache_size)
            return None
        principal = record.principal()
        _put(self._hits, digest, (principal, now + self.cache_ttl_s), self.cache_size)
        return principal

    @staticmethod
    def _accept(found: object) -> Principal:
        if isinstance(found, Principal):
            return found
        raise Unauthorized("the API key is not valid", hint="Check it, or ask for a new one")


def _put(cache: dict[bytes, Any], key: bytes, value: Any, size: int) -> None:
    cache.pop(key, None)
    while len(cache) >= size:
        del cache[next(iter(cache))]
    cache[key] = value


def _presented(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The key in `Authorization: Bearer` (first) or `X-API-Key`, and its SHA-256 digest."""
    bearer: bytes | None = None
    api_key: bytes | None = None
    other_scheme = False
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            scheme, _, rest = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                bearer = rest.strip()
            else:
                other_scheme = True
        elif name == b"x-api-key" and api_key is None:
            api_key = value.strip()
    key = bearer if bearer is not None else api_key
    if key is None:
        if other_scheme:
            raise Unauthorized("the Authorization header does not use the Bearer scheme", hint=_SEND_HINT)
        raise Unauthorized("no API key given", hint=_SEND_HINT)
    if not key or len(key) > MAX_KEY_BYTES or not key.isascii() or b" " in key:
        raise Unauthorized("the API key is not valid", hint=_SEND_HINT)
    return key, hashlib.sha256(key).digest()
