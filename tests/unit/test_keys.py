"""API keys: the store on a real SQLite file, static keys, and the per-request `Authenticator`."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from servekit.errors import Conflict, InvalidInput, InvalidName, NotFound, RegistryError
from servekit.security.keys import (
    Authenticator,
    Forbidden,
    KeyStore,
    Principal,
    Unauthorized,
    require,
    static_keys,
)

KEY_FORMAT = re.compile(r"sk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}")
STATIC = "static-key-0123456789"
ADMIN_STATIC = "admin-key-abcdefghijk"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


@pytest.fixture
def store(db: Path):
    with KeyStore(f"sqlite:///{db}") as keys:
        yield keys


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"localhost"), (b"authorization", b"Bearer " + key.encode())]


def unrevoke(db: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET revoked_at = NULL"))
    engine.dispose()


# -- the store ------------------------------------------------------------------------------------
def test_create_list_revoke_round_trip(store: KeyStore) -> None:
    record, key = store.create("ci")
    admin, admin_key = store.create("ops", ["admin", "predict"])
    assert KEY_FORMAT.fullmatch(key) and KEY_FORMAT.fullmatch(admin_key)
    assert key.split("_")[1] == record.id and record.name == "ci"
    assert record.scopes == {"predict"} and admin.scopes == {"admin", "predict"}
    assert record.active and record.created_at.tzinfo is not None
    assert [(r.id, r.name, r.scopes, r.active) for r in store.list()] == [
        (record.id, "ci", {"predict"}, True),
        (admin.id, "ops", {"admin", "predict"}, True),
    ]
    assert store.lookup(key) == record

    revoked = store.revoke("ci")
    assert revoked.id == record.id and revoked.revoked_at is not None and not revoked.active
    listed = {r.id: r for r in store.list()}
    assert listed[record.id].revoked_at == revoked.revoked_at
    assert listed[admin.id].active
    assert store.lookup(key) is None
    assert store.revoke(admin.id).name == "ops"  # by id
    assert store.lookup(admin_key) is None


def test_the_database_holds_a_hash_never_the_key(store: KeyStore, db: Path) -> None:
    keys = [store.create(f"k{i}")[1] for i in range(3)]
    store.revoke("k1")
    store.close()
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # with the WAL file
    import hashlib

    for key in keys:
        secret = key.split("_", 2)[2]
        assert secret.encode() not in stored and key.encode() not in stored
        assert hashlib.sha256(key.encode()).hexdigest().encode() in stored  # the search does see rows


def test_lookup_refuses_wrong_unknown_and_malformed_keys(store: KeyStore) -> None:
    record, key = store.create("ci")
    last = key[-1]
    assert store.lookup(key[:-1] + ("A" if last != "A" else "B")) is None  # right id, wrong secret
    assert store.lookup("sk_ZZZZZZZZ_" + key[12:]) is None  # unknown id
    for malformed in ["", "sk_", key + "x", key[:-1], key.replace("_", "-", 1), " " + key[1:], "é" * 55]:
        assert store.lookup(malformed) is None
    assert store.lookup(key) == record


def test_names_are_unique_among_active_keys(store: KeyStore) -> None:
    first, _ = store.create("ci")
    with pytest.raises(Conflict, match="already exists") as info:
        store.create("ci")
    assert first.id in info.value.message and "servekit keys revoke ci" in str(info.value.hint)
    store.revoke("ci")
    second, key = store.create("ci")  # the replacement takes the name over
    assert second.id != first.id
    assert store.revoke("ci").id == second.id
    with pytest.raises(Conflict, match="already revoked"):
        store.revoke("ci")
    with pytest.raises(Conflict, match="already revoked"):
        store.revoke(first.id)
    assert store.lookup(key) is None


def test_revoke_unknown_and_revoke_by_whole_key_never_echo_the_key(store: KeyStore) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        store.revoke("nope")
    record, key = store.create("ci")
    secret = key.split("_", 2)[2]
    forged = key[:-4] + "AAAA" if not key.endswith("AAAA") else key[:-4] + "BBBB"
    with pytest.raises(NotFound) as info:
        store.revoke(forged)
    assert secret[:-4] not in str(info.value) and record.id in str(info.value)
    assert store.revoke(key).id == record.id
    with pytest.raises(NotFound) as info:
        store.revoke("x" * 200)
    assert "x" * 65 not in str(info.value)


def test_create_validates_name_and_scopes(store: KeyStore) -> None:
    with pytest.raises(InvalidInput, match="'root'"):
        store.create("ci", ["predict", "root"])
    with pytest.raises(InvalidInput, match="no scope"):
        store.create("ci", [])
    with pytest.raises(InvalidName, match="key name"):
        store.create("bad name")
    assert store.create("both", ["predict+admin"])[0].scopes == {"predict", "admin"}
    assert store.list()[0].name == "both"


def test_a_bad_database_url_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="not a database URL"):
        KeyStore("not a url")


def test_at_home_uses_the_registry_database(servekit_home: Path) -> None:
    from servekit.registry import Registry

    with KeyStore.at_home() as keys:
        keys.create("ci")
    assert (servekit_home / "registry.db").is_file()
    with Registry() as registry:  # the registry opens the same file with the extra table fine
        assert registry.models() == []
    with KeyStore.at_home(servekit_home) as keys:
        assert [r.name for r in keys.list()] == ["ci"]


# -- static keys ----------------------------------------------------------------------------------
def test_static_keys_scopes_and_ids() -> None:
    keys = static_keys([f"{STATIC}, {ADMIN_STATIC}:admin ,", "third-key-with:colon-inside:predict+admin"])
    assert [(k.id, k.scopes) for k in keys] == [
        ("static:1", {"predict"}),
        ("static:2", {"admin"}),
        ("static:3", {"admin", "predict"}),
    ]
    assert STATIC not in repr(keys) and ADMIN_STATIC not in repr(keys)
    auth = Authenticator(keys)
    assert auth.check(bearer("third-key-with:colon-inside")).id == "static:3"
    assert auth.check([(b"x-api-key", ADMIN_STATIC.encode())]).scopes == {"admin"}
    assert static_keys([]) == [] and static_keys([" , "]) == []


@pytest.mark.parametrize(
    ("value", "secret", "message"),
    [
        ("short", "short", "at least 16"),
        ("has a space in the key", "has a space", "at least 16"),
        (f"{STATIC}:root", STATIC, "unknown scope"),
        ("a-key-with:a-colon-inside", "a-colon-inside", "unknown scope after its last ':'"),
        (f"{STATIC},{STATIC}:admin", STATIC, "static:2 and static:3 are the same key"),
    ],
)
def test_bad_static_keys_are_refused_without_echoing_them(value: str, secret: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        static_keys(["first-good-key-0123456789", value])
    assert secret not in str(info.value)
    assert "static:2" in str(info.value)


# -- the authenticator ----------------------------------------------------------------------------
def test_both_header_forms_and_any_case_of_bearer(store: KeyStore) -> None:
    record, key = store.create("ci")
    auth = Authenticator(static_keys([STATIC]), store)
    expected = Principal(record.id, frozenset({"predict"}), "ci")
    assert auth.check(bearer(key)) == expected
    assert auth.check([(b"x-api-key", key.encode())]) == expected
    assert auth.check([(b"authorization", b"bearer   " + key.encode() + b" ")]) == expected
    assert auth.check([(b"authorization", b"BEARER " + STATIC.encode())]).id == "static:1"
    # A Basic header (e.g. from a proxy) does not hide an X-API-Key.
    assert auth.check([(b"authorization", b"Basic dXNlcjpwYXNz"), (b"x-api-key", key.encode())]) == expected


def test_missing_and_wrong_keys_are_unauthorized(store: KeyStore) -> None:
    _, key = store.create("ci")
    auth = Authenticator(static_keys([STATIC]), store)
    with pytest.raises(Unauthorized, match="no API key") as info:
        auth.check([(b"host", b"x")])
    error = info.value
    assert error.status == 401 and error.title == "Unauthorized" and error.public_message == error.detail
    assert error.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(Unauthorized, match="Bearer scheme"):
        auth.check([(b"authorization", b"Basic dXNlcjpwYXNz")])
    wrong = key[:-2] + ("xy" if not key.endswith("xy") else "yz")
    for presented in [wrong, STATIC + "x", "sk_ZZZZZZZZ_" + key[12:]]:
        with pytest.raises(Unauthorized) as info:
            auth.check(bearer(presented))
        assert presented not in str(info.value) and key not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"")],
        [(b"x-api-key", b"")],
        [(b"x-api-key", b"   ")],
        [(b"authorization", b"Bearer \xff\xfe\x00\x80")],
        [(b"x-api-key", "clé-non-ascii-0123456789".encode())],
        [(b"authorization", b"Bearer " + b"A" * 1_000_000)],
        [(b"x-api-key", b"sk_" + b"A" * 300)],
        [(b"authorization", b"Bearer two words")],
        [(b"x-api-key", b"\x00" * 55)],
        [(b"authorization", b"Bearer sk_\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9_" + b"a" * 43)],
    ],
)
def test_malformed_headers_are_unauthorized_never_another_error(store: KeyStore, headers: list) -> None:
    store.create("ci")
    auth = Authenticator(static_keys([STATIC]), store)
    with pytest.raises(Unauthorized):
        auth.check(headers)


def test_scopes(store: KeyStore) -> None:
    _, predict_key = store.create("app")
    _, admin_key = store.create("ops", ["admin"])
    auth = Authenticator((), store)
    user = auth.check(bearer(predict_key))
    require(user, "predict")
    with pytest.raises(Forbidden, match="lacks the 'admin' scope") as info:
        require(user, "admin")
    assert info.value.status == 403 and user.id in info.value.message and predict_key not in str(info.value)
    admin = auth.check(bearer(admin_key))
    require(admin, "admin")
    with pytest.raises(Forbidden):  # admin does not imply predict
        require(admin, "predict")


def test_revoked_key_is_refused_once_the_cache_ttl_has_passed(store: KeyStore) -> None:
    _, key = store.create("ci")
    clock = Clock()
    auth = Authenticator((), store, cache_ttl_s=0.05, clock=clock)
    assert auth.check(bearer(key)).id
    store.revoke("ci")
    clock.now += 0.04
    assert auth.check(bearer(key)).id  # still cached: this is the documented window
    clock.now += 0.02
    with pytest.raises(Unauthorized):
        auth.check(bearer(key))


def test_revocation_with_the_real_clock(store: KeyStore) -> None:
    _, key = store.create("ci")
    auth = Authenticator((), store, cache_ttl_s=0.05)
    auth.check(bearer(key))
    store.revoke("ci")
    time.sleep(0.06)
    with pytest.raises(Unauthorized):
        auth.check(bearer(key))


def test_misses_are_remembered_for_at_most_a_second(store: KeyStore, db: Path) -> None:
    _, key = store.create("ci")
    store.revoke("ci")
    clock = Clock()
    auth = Authenticator((), store, cache_ttl_s=60, clock=clock)
    with pytest.raises(Unauthorized):
        auth.check(bearer(key))
    unrevoke(db)
    clock.now += 0.5
    with pytest.raises(Unauthorized):  # the miss is still cached
        auth.check(bearer(key))
    clock.now += 0.51
    assert auth.check(bearer(key)).name == "ci"


def test_the_cache_is_bounded_and_misses_do_not_evict_valid_keys(store: KeyStore) -> None:
    made = [store.create(f"k{i}") for i in range(3)]
    clock = Clock()
    auth = Authenticator((), store, cache_size=2, clock=clock)
    for _, key in made:
        auth.check(bearer(key))  # k0 falls out of the two-entry cache
    for i in range(20):  # a flood of unknown well-formed keys
        with pytest.raises(Unauthorized):
            auth.check(bearer(f"sk_Unknown{i % 10}_" + "a" * 43))
    for name in ("k0", "k2"):
        store.revoke(name)
    with pytest.raises(Unauthorized):
        auth.check(bearer(made[0][1]))  # evicted: looked up again, and revoked
    assert auth.check(bearer(made[2][1])).name == "k2"  # cached, within its TTL
    auth.clear()
    with pytest.raises(Unauthorized):
        auth.check(bearer(made[2][1]))


def test_static_only_authenticator_refuses_stored_looking_keys(store: KeyStore) -> None:
    _, key = store.create("ci")
    auth = Authenticator(static_keys([STATIC]))
    with pytest.raises(Unauthorized):
        auth.check(bearer(key))


def test_check_async_looks_up_in_a_thread(store: KeyStore) -> None:
    _, key = store.create("ci")
    auth = Authenticator((), store)

    async def run() -> tuple[Principal, Principal]:
        return await auth.check_async(bearer(key)), await auth.check_async(bearer(key))

    first, cached = asyncio.run(run())
    assert first == cached and first.name == "ci"
    with pytest.raises(Unauthorized):
        asyncio.run(auth.check_async([(b"x-api-key", b"nope")]))


def test_cached_check_takes_microseconds(store: KeyStore) -> None:
    _, key = store.create("ci")
    auth = Authenticator(static_keys([STATIC]), store)
    headers = [(b"host", b"localhost:8000"), (b"user-agent", b"python-httpx/0.28"), *bearer(key)[1:]]
    auth.check(headers)
    rounds = 20_000
    start = time.perf_counter()
    for _ in range(rounds):
        auth.check(headers)
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} µs per check"  # ~3 µs on a laptop; loose for CI


def test_bad_cache_settings() -> None:
    with pytest.raises(InvalidInput):
        Authenticator((), None, cache_size=0)
    with pytest.raises(InvalidInput):
        Authenticator((), None, cache_ttl_s=-1)
