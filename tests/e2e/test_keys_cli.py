"""`servekit keys` as users run it: keys made by the CLI work with an `Authenticator` on the same database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from servekit.security.keys import Authenticator, KeyStore, Unauthorized, require
from tests.support import SERVEKIT, one_line_error

KEYS = [SERVEKIT, "keys"]


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KEYS, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


def test_created_key_is_accepted_until_revoked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "no API keys yet" in ok(run("list", home=home))
    created = run("create", "ci", home=home)
    key = ok(created).strip()
    assert key.startswith("sk_") and len(key.splitlines()) == 1  # stdout is the key alone
    assert "cannot be shown again" in created.stderr and key not in created.stderr

    made = json.loads(ok(run("create", "ops", "--scope", "admin", "--scope", "predict", "--json", home=home)))
    assert made["name"] == "ops" and made["scopes"] == ["admin", "predict"] and made["revoked_at"] is None
    assert made["key"].startswith(f"sk_{made['id']}_")
    assert "already exists" in one_line_error(run("create", "ci", home=home))
    assert "unknown scope 'root'" in one_line_error(run("create", "x", "--scope", "root", home=home))

    with KeyStore.at_home(home) as store:
        auth = Authenticator((), store, cache_ttl_s=0)
        user = auth.check(bearer(key))
        assert user.name == "ci" and user.scopes == {"predict"}
        admin = auth.check([(b"x-api-key", made["key"].encode())])
        require(admin, "admin")

        listed = ok(run("list", home=home))
        assert "ci" in listed and made["id"] in listed and "admin, predict" in listed
        assert key[12:20] not in listed and made["key"][12:20] not in listed  # no part of a secret
        rows = json.loads(ok(run("list", "--json", home=home)))
        assert [(r["id"], r["name"], r["revoked_at"]) for r in rows] == [
            (user.id, "ci", None),
            (made["id"], "ops", None),
        ]
        assert all("key" not in r for r in rows)

        revoked = ok(run("revoke", "ci", home=home))
        assert "revoked" in revoked and user.id in revoked
        with pytest.raises(Unauthorized):
            auth.check(bearer(key))
        assert auth.check([(b"x-api-key", made["key"].encode())]).name == "ops"
        assert "already revoked" in one_line_error(run("revoke", "ci", home=home))

        gone = json.loads(ok(run("revoke", made["id"], "--json", home=home)))
        assert gone["id"] == made["id"] and gone["revoked_at"] is not None
        with pytest.raises(Unauthorized):
            auth.check(bearer(made["key"]))
        assert all(not r.active for r in store.list())

    stored = b"".join(p.read_bytes() for p in home.glob("registry.db*"))
    assert key.encode() not in stored and made["key"].encode() not in stored


def test_revoking_an_unknown_key_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run("revoke", "nope", home=tmp_path / "home"))
    assert "no API key with the id or name 'nope'" in line and "servekit keys list" in line
