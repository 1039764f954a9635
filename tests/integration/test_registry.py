from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from servekit.bundle import MANIFEST_NAME, Bundle, Manifest, file_digests, sha256_file
from servekit.errors import (
    Conflict,
    InvalidManifest,
    InvalidName,
    ModelNotFound,
    RegistryError,
    TamperedArtifact,
    VersionNotFound,
)
from servekit.registry import Registry, default_home
from servekit.registry import store as store_module
from servekit.signature import Signature

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def iris_model() -> LogisticRegression:
    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(x, y)


def make_bundle(
    folder: Path,
    model: LogisticRegression,
    *,
    name: str = "iris",
    version: int | None = None,
    notes: bool = False,
) -> Bundle:
    """A bundle folder built by hand: the artifact, optionally a second file, and a manifest."""
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    if notes:
        (folder / "docs").mkdir()
        (folder / "docs" / "notes.txt").write_text("trained on iris\n")
    manifest = Manifest(
        name=name,
        version=version,
        format="joblib",
        artifact="model.joblib",
        task="classification",
        classes=[0, 1, 2],
        signature=Signature.positional(4).to_dict(),
        framework="scikit-learn",
        framework_version=sklearn.__version__,
        python_version="3.11",
        servekit_version="0.1.0",
        metrics={"accuracy": 0.97},
        files=file_digests(folder),
    )
    bundle = Bundle(folder, manifest)
    bundle.write_manifest()
    return Bundle.read(folder)


@pytest.fixture
def bundle(tmp_path: Path, iris_model: LogisticRegression) -> Bundle:
    return make_bundle(tmp_path / "bundle", iris_model)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "home") as reg:
        yield reg


def stored_entries(reg: Registry) -> list[str]:
    """Everything under the store folder but the (empty) staging area."""
    root = Path(reg.store_url)
    staging = root / ".staging"
    assert not staging.exists() or not any(staging.iterdir()), "a staging folder was left behind"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p != staging)


# -- push and read ------------------------------------------------------------------------------
def test_push_stores_numbered_immutable_versions(registry: Registry, bundle: Bundle) -> None:
    first = registry.push(bundle)
    second = registry.push(bundle)

    assert (first.name, first.version, second.version) == ("iris", 1, 2)
    assert first.format == "joblib"
    assert first.created_at.tzinfo is not None
    assert first.path == registry.home / "models" / "iris" / "1"
    assert first.files == {"model.joblib": sha256_file(bundle.artifact_path)}
    assert first.manifest.version == 1 and second.manifest.version == 2
    assert first.manifest.metrics == {"accuracy": 0.97}
    on_disk = Manifest.from_yaml((first.path / MANIFEST_NAME).read_text())
    assert (on_disk.name, on_disk.version) == ("iris", 1)
    assert stored_entries(registry) == [
        "iris",
        "iris/1",
        "iris/1/model.joblib",
        "iris/1/servekit.yaml",
        "iris/2",
        "iris/2/model.joblib",
        "iris/2/servekit.yaml",
    ]
    assert [rv.version for rv in registry.versions("iris")] == [1, 2]
    # The bundle pushed is untouched: pushing never writes into the source folder.
    assert Bundle.read(bundle.path).manifest.version is None


def test_get_and_resolve_by_number_alias_and_latest(registry: Registry, bundle: Bundle) -> None:
    for _ in range(3):
        registry.push(bundle)
    registry.promote("iris", 2, "production")

    assert registry.get("iris").version == 3
    assert registry.get("iris", "latest").version == 3
    assert registry.get("iris", 1).version == 1
    assert registry.get("iris", "1").version == 1
    assert registry.get("iris", "production").version == 2
    assert registry.resolve("iris").version == 3
    assert registry.resolve("iris:2").version == 2
    rv = registry.resolve("iris@production")
    assert (rv.version, rv.aliases) == (2, ("production",))
    assert registry.get("iris", 1).aliases == ()


def test_a_registered_version_loads_and_predicts_like_the_original(
    registry: Registry, bundle: Bundle, iris_model: LogisticRegression
) -> None:
    rv = registry.push(bundle)
    stored = registry.bundle(rv)
    assert stored.manifest == rv.manifest
    assert stored.path == rv.path
    x, _ = load_iris(return_X_y=True)
    loaded = joblib.load(stored.artifact_path)
    np.testing.assert_array_equal(loaded.predict(x), iris_model.predict(x))


def test_push_under_another_name_records_that_name(registry: Registry, bundle: Bundle) -> None:
    rv = registry.push(bundle, name="flowers")
    assert (rv.name, rv.manifest.name, rv.version) == ("flowers", "flowers", 1)
    assert [m.name for m in registry.models()] == ["flowers"]


def test_a_version_from_the_manifest_is_used_if_free(
    registry: Registry, tmp_path: Path, iris_model: LogisticRegression, bundle: Bundle
) -> None:
    pinned = make_bundle(tmp_path / "pinned", iris_model, version=5)
    assert registry.push(pinned).version == 5
    assert registry.push(bundle).version == 6

    with pytest.raises(Conflict, match=r"iris:5 already exists"):
        registry.push(pinned)
    assert [rv.version for rv in registry.versions("iris")] == [5, 6]
    assert [e for e in stored_entries(registry) if e.count("/") == 1] == ["iris/5", "iris/6"]


def test_models_summarises_every_model(registry: Registry, bundle: Bundle) -> None:
    assert registry.models() == []
    registry.push(bundle)
    registry.push(bundle)
    registry.push(bundle, name="aardvark")
    registry.promote("iris", 1, "production")

    summaries = registry.models()
    assert [(s.name, s.latest_version, s.versions, s.aliases) for s in summaries] == [
        ("aardvark", 1, 1, {}),
        ("iris", 2, 2, {"production": 1}),
    ]
    iris = summaries[1]
    assert iris.updated_at is not None
    assert iris.updated_at >= registry.get("iris", 2).created_at


# -- aliases ------------------------------------------------------------------------------------
def test_promote_and_rollback_walk_the_alias_history(registry: Registry, bundle: Bundle) -> None:
    for _ in range(3):
        registry.push(bundle)
    assert registry.promote("iris", 1, "production").aliases == ("production",)
    registry.promote("iris", 2, "production")
    registry.promote("iris", 2, "production")  # already there: not a new step in the history
    registry.promote("iris", 3, "production")
    registry.promote("iris", 3, "staging")
    assert registry.aliases("iris") == {"production": 3, "staging": 3}

    assert registry.rollback("iris", "production").version == 2
    assert registry.rollback("iris", "production").version == 1
    with pytest.raises(Conflict, match="nothing to roll back: iris@production points at version 1"):
        registry.rollback("iris", "production")
    assert registry.aliases("iris") == {"production": 1, "staging": 3}

    # A promote after a rollback is undone by the next rollback.
    registry.promote("iris", 3, "production")
    assert registry.rollback("iris", "production").version == 1


def test_rollback_of_an_unknown_alias_lists_the_existing_ones(registry: Registry, bundle: Bundle) -> None:
    registry.push(bundle)
    registry.promote("iris", 1, "production")
    with pytest.raises(VersionNotFound, match=r"no alias 'staging'; its aliases are: production \(version 1\)"):
        registry.rollback("iris", "staging")


def test_promote_refuses_bad_aliases_and_missing_versions(registry: Registry, bundle: Bundle) -> None:
    registry.push(bundle)
    with pytest.raises(InvalidName, match="all digits"):
        registry.promote("iris", 1, "2")
    with pytest.raises(InvalidName, match="path separator"):
        registry.promote("iris", 1, "prod/eu")
    with pytest.raises(VersionNotFound, match="no version 7; its versions are 1"):
        registry.promote("iris", 7, "production")
    with pytest.raises(ModelNotFound):
        registry.promote("wine", 1, "production")
    assert registry.aliases("iris") == {}


# -- remove -------------------------------------------------------------------------------------
def test_remove_refuses_a_version_an_alias_points_at_unless_forced(registry: Registry, bundle: Bundle) -> None:
    for _ in range(3):
        registry.push(bundle)
    registry.promote("iris", 2, "production")

    with pytest.raises(Conflict, match=r"cannot remove iris:2: iris@production point\(s\) at it"):
        registry.remove("iris", 2)
    assert (registry.home / "models" / "iris" / "2").is_dir()

    registry.remove("iris", 2, force=True)
    assert registry.aliases("iris") == {}
    assert not (registry.home / "models" / "iris" / "2").exists()
    assert [rv.version for rv in registry.versions("iris")] == [1, 3]


def test_removed_numbers_are_never_reused(registry: Registry, bundle: Bundle) -> None:
    registry.push(bundle)
    registry.push(bundle)
    registry.remove("iris", 2)
    assert registry.push(bundle).version == 3
    registry.remove("iris", 1)
    registry.remove("iris", 3)
    with pytest.raises(ModelNotFound):
        registry.versions("iris")
    assert registry.models() == []
    assert registry.push(bundle).version == 4


def test_removing_a_version_drops_it_from_rollback_history(registry: Registry, bundle: Bundle) -> None:
    for _ in range(3):
        registry.push(bundle)
    for version in (1, 2, 3):
        registry.promote("iris", version, "production")
    registry.remove("iris", 2)
    assert registry.rollback("iris", "production").version == 1


# -- errors -------------------------------------------------------------------------------------
def test_unknown_models_versions_and_aliases(registry: Registry, bundle: Bundle) -> None:
    with pytest.raises(ModelNotFound) as info:
        registry.get("wine")
    assert f"no model named 'wine' in the registry at {registry.home}" in str(info.value)
    assert "`servekit models`" in str(info.value)
    with pytest.raises(ModelNotFound):
        registry.aliases("wine")

    registry.push(bundle)
    registry.push(bundle)
    with pytest.raises(VersionNotFound, match="model 'iris' has no version 9; its versions are 1, 2"):
        registry.get("iris", 9)
    with pytest.raises(VersionNotFound, match="model 'iris' has no alias 'production'; its aliases are: none"):
        registry.resolve("iris@production")
    with pytest.raises(InvalidName):
        registry.get("iris", "prod/eu")
    with pytest.raises(InvalidName):
        registry.get("../iris")


@pytest.mark.parametrize("bad", ["a/b", "..", "", "-x", "my model"])
def test_invalid_names_are_refused_before_anything_is_written(registry: Registry, bundle: Bundle, bad: str) -> None:
    with pytest.raises(InvalidName):
        registry.push(bundle, name=bad)
    assert registry.models() == []
    assert stored_entries(registry) == []


def test_a_bad_database_url_is_a_one_line_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="is not a database URL"):
        Registry(tmp_path, database_url="not a url")
    # A folder where the database file should be: SQLite cannot open it.
    with pytest.raises(RegistryError) as info:
        Registry(tmp_path, database_url=f"sqlite:///{tmp_path}")
    assert "unable to open database file" in str(info.value)
    assert "\n" not in str(info.value) and "sqlalche.me" not in str(info.value)


def test_default_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_HOME", str(tmp_path / "elsewhere"))
    assert default_home() == tmp_path / "elsewhere"
    with Registry() as reg:
        assert reg.home == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "registry.db").is_file()
    assert (tmp_path / "elsewhere" / "models").is_dir()
    monkeypatch.delenv("SERVEKIT_HOME")
    assert default_home() == Path.home() / ".servekit"


# -- tampering ----------------------------------------------------------------------------------
def test_a_stored_artifact_changed_after_push_is_refused(registry: Registry, bundle: Bundle) -> None:
    rv = registry.push(bundle)
    registry.bundle(rv).verify(rv.files)  # intact: no error
    with (rv.path / "model.joblib").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(TamperedArtifact, match=r"model\.joblib has sha256"):
        registry.bundle(registry.get("iris", 1))


def test_a_stored_file_deleted_after_push_is_refused(registry: Registry, bundle: Bundle) -> None:
    rv = registry.push(bundle)
    (rv.path / "model.joblib").unlink()
    with pytest.raises(TamperedArtifact, match=r"model\.joblib is missing"):
        registry.bundle(rv)


def test_a_stored_manifest_edited_after_push_is_refused(registry: Registry, bundle: Bundle) -> None:
    rv = registry.push(bundle)
    manifest_file = rv.path / MANIFEST_NAME
    edited = rv.manifest.model_copy(update={"format": "pickle"})
    manifest_file.write_text(edited.to_yaml())
    with pytest.raises(TamperedArtifact, match=r"servekit\.yaml changed after it was pushed"):
        registry.bundle(rv)
    manifest_file.write_text("name: [unclosed")
    with pytest.raises(TamperedArtifact, match=r"servekit\.yaml changed after it was pushed"):
        registry.bundle(rv)


def test_a_tampered_bundle_is_refused_and_leaves_nothing(registry: Registry, bundle: Bundle) -> None:
    with bundle.artifact_path.open("ab") as handle:
        handle.write(b"extra")
    with pytest.raises(TamperedArtifact, match=r"model\.joblib has sha256"):
        registry.push(bundle)
    assert registry.models() == []
    assert stored_entries(registry) == []


def test_a_manifest_listing_files_outside_the_bundle_is_refused(registry: Registry, bundle: Bundle) -> None:
    bundle.manifest.files["../escape.txt"] = "0" * 64
    with pytest.raises(InvalidManifest, match="not a relative path inside the bundle"):
        registry.push(bundle)
    assert stored_entries(registry) == []


# -- faults in the middle of a push -------------------------------------------------------------
def test_a_failure_while_copying_leaves_no_row_and_no_folder(
    registry: Registry, tmp_path: Path, iris_model: LogisticRegression, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_files = make_bundle(tmp_path / "two", iris_model, notes=True)
    assert sorted(two_files.manifest.files) == ["docs/notes.txt", "model.joblib"]
    real_copy = store_module.copy_file
    copied: list[Path] = []

    def copy_then_fail(source: Path, target: Path) -> None:
        if copied:
            raise OSError(28, "No space left on device")
        real_copy(source, target)
        copied.append(target)

    monkeypatch.setattr(store_module, "copy_file", copy_then_fail)
    with pytest.raises(RegistryError, match="No space left on device"):
        registry.push(two_files)
    assert len(copied) == 1 and not copied[0].exists()
    assert registry.models() == []
    assert stored_entries(registry) == []

    monkeypatch.setattr(store_module, "copy_file", real_copy)
    rv = registry.push(two_files)
    assert rv.version == 1
    assert sorted(rv.files) == ["docs/notes.txt", "model.joblib"]
    registry.bundle(rv)


def test_a_failure_after_the_folder_is_in_place_rolls_everything_back(
    registry: Registry, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.push(bundle)
    real_publish = store_module.FileStore.publish

    def publish_then_fail(self: store_module.FileStore, staging: Path, name: str, version: int) -> None:
        real_publish(self, staging, name, version)
        assert (self.local_path(name, version) / "model.joblib").is_file()
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store_module.FileStore, "publish", publish_then_fail)
    with pytest.raises(RegistryError, match="Input/output error"):
        registry.push(bundle)
    assert [rv.version for rv in registry.versions("iris")] == [1]
    assert [e for e in stored_entries(registry) if e.count("/") == 1] == ["iris/1"]

    monkeypatch.setattr(store_module.FileStore, "publish", real_publish)
    assert registry.push(bundle).version == 2


# -- concurrency --------------------------------------------------------------------------------
PUSHER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from servekit.bundle import Bundle
    from servekit.registry import Registry

    home, source, pushes, ready, go = sys.argv[1:]
    registry = Registry(home)
    bundle = Bundle.read(Path(source))
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    print(json.dumps([registry.push(bundle).version for _ in range(int(pushes))]))
    registry.close()
    """
)


def test_processes_pushing_at_once_get_distinct_consecutive_versions(
    tmp_path: Path, bundle: Bundle, iris_model: LogisticRegression
) -> None:
    processes, pushes = 3, 4
    home = tmp_path / "home"
    script = tmp_path / "pusher.py"
    script.write_text(PUSHER)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    running = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(home),
                str(bundle.path),
                str(pushes),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(processes)):
        assert all(p.poll() is None for p in running), [p.communicate() for p in running]
        assert time.monotonic() < deadline, "the pushing processes did not start"
        time.sleep(0.01)
    go.touch()
    results = []
    for process in running:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out))

    everything = sorted(v for versions in results for v in versions)
    assert everything == list(range(1, processes * pushes + 1))
    assert all(len(versions) == pushes for versions in results)
    with Registry(home) as reg:
        stored = reg.versions("iris")
        assert [rv.version for rv in stored] == everything
        for rv in stored:
            assert reg.bundle(rv).manifest.version == rv.version
        assert stored_entries(reg).count("iris") == 1


# -- a remote (fsspec) store --------------------------------------------------------------------
def test_an_fsspec_store_works_like_a_folder(tmp_path: Path, iris_model: LogisticRegression) -> None:
    import fsspec

    url = f"memory://servekit-{uuid.uuid4().hex}"
    bundle = make_bundle(tmp_path / "bundle", iris_model, notes=True)
    with Registry(tmp_path / "home", store_url=url) as reg:
        rv = reg.push(bundle)
        assert rv.path == tmp_path / "home" / "cache" / "iris" / "1"
        remote = fsspec.filesystem("memory")
        root = url.removeprefix("memory://")
        stored = sorted(p.split(f"{root}/", 1)[1] for p in remote.find(root))
        assert stored == ["iris/1/docs/notes.txt", "iris/1/model.joblib", "iris/1/servekit.yaml"]

        # The local copy is only a cache: without it, the bundle is downloaded again.
        for file in sorted(rv.path.rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
        rv.path.rmdir()
        assert reg.bundle(rv).manifest.version == 1
        assert (rv.path / "docs" / "notes.txt").read_text() == "trained on iris\n"

        reg.remove("iris", 1)
        assert remote.find(root) == []
        assert not rv.path.exists()
