"""The write step and the choice of servekit's installation source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servekit import __version__
from servekit.bundle import Bundle
from servekit.deploy.wheel import servekit_source, source_checkout
from servekit.deploy.write import check_output, monitoring_assets, write_build
from servekit.errors import Conflict, InvalidInput
from tests.support import iris_bundle


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return Bundle.read(iris_bundle(tmp_path))


def test_only_the_manifest_and_the_files_it_records_are_shipped(bundle: Bundle, tmp_path: Path) -> None:
    (bundle.path / "notes.txt").write_text("not part of the model")
    written = write_build(tmp_path / "out", {"Dockerfile": "FROM x\n"}, bundle=bundle, model_name="iris")
    shipped = sorted(p.name for p in (tmp_path / "out" / "models" / "iris").iterdir())
    assert shipped == ["iris.joblib", "servekit.yaml"]
    assert written.files == ["Dockerfile", "models/iris/servekit.yaml", "models/iris/iris.joblib"]
    assert (tmp_path / "out" / "Dockerfile").read_text() == "FROM x\n"


def test_executables_and_the_wheel_are_written(bundle: Bundle, tmp_path: Path) -> None:
    wheel = tmp_path / "servekit-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    files = {"build-zip.sh": "#!/bin/sh\n", "README.md": "x\n"}
    write_build(tmp_path / "out", files, bundle=bundle, model_name="iris", wheel=wheel, executables={"build-zip.sh"})
    assert os.access(tmp_path / "out" / "build-zip.sh", os.X_OK)
    assert not os.access(tmp_path / "out" / "README.md", os.X_OK)
    assert (tmp_path / "out" / "wheels" / wheel.name).read_bytes() == b"PK"


def test_an_existing_folder_is_replaced_whole_only_with_force(bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(Conflict):
        write_build(out, {"a.txt": "a"}, bundle=bundle, model_name="iris")
    assert (out / "old.txt").exists() and not (out / "a.txt").exists()
    write_build(out, {"a.txt": "a"}, bundle=bundle, model_name="iris", force=True)
    assert not (out / "old.txt").exists() and (out / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []  # no staging left
    (tmp_path / "file").write_text("x")
    with pytest.raises(Conflict):
        check_output(tmp_path / "file", force=True)
    check_output(tmp_path / "empty", force=False)  # missing is fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", force=False)  # empty is fine


def test_monitoring_assets_are_copied_when_they_exist(bundle: Bundle, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "docs" / "monitoring").mkdir(parents=True)
    (checkout / "docs" / "monitoring" / "grafana-dashboard.json").write_text('{"title": "servekit"}')
    assets = monitoring_assets(checkout, packaged=tmp_path / "no-package-assets")
    found = dict(assets)
    assert found["monitoring/grafana/dashboards/servekit.json"] == checkout / "docs/monitoring/grafana-dashboard.json"
    written = write_build(tmp_path / "out", {}, bundle=bundle, model_name="iris", assets=assets)
    assert written.assets == ["monitoring/grafana/dashboards/servekit.json"]
    assert (tmp_path / "out/monitoring/grafana/dashboards/servekit.json").read_text() == '{"title": "servekit"}'
    assert written.missing_assets == ["monitoring/prometheus/rules/servekit-alerts.yml"]
    assert (tmp_path / "out/monitoring/prometheus/rules").is_dir()  # Prometheus' rule glob finds nothing, no error


def test_the_installed_package_assets_come_first(tmp_path: Path) -> None:
    packaged = tmp_path / "assets"
    packaged.mkdir()
    (packaged / "alerts.yml").write_text("groups: []\n")
    checkout = tmp_path / "checkout"
    (checkout / "docs" / "monitoring").mkdir(parents=True)
    (checkout / "docs" / "monitoring" / "alerts.yml").write_text("groups: [old]\n")
    found = dict(monitoring_assets(checkout, packaged=packaged))
    assert found["monitoring/prometheus/rules/servekit-alerts.yml"] == packaged / "alerts.yml"
    assert found["monitoring/grafana/dashboards/servekit.json"] is None


def test_servekit_comes_from_a_given_wheel_from_pypi_or_from_the_checkout(tmp_path: Path) -> None:
    wheel = tmp_path / "servekit-2.3.4-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    given = servekit_source(wheel=wheel, pypi=False, scratch=tmp_path)
    assert given.version == "2.3.4" and given.wheel == wheel
    released = servekit_source(wheel=None, pypi=True, scratch=tmp_path)
    assert released.version == __version__ and released.wheel is None
    with pytest.raises(InvalidInput):
        servekit_source(wheel=tmp_path / "other.whl", pypi=False, scratch=tmp_path)
    checkout = source_checkout()
    if checkout is not None:  # an editable or local install, as in development and CI
        assert (checkout / "pyproject.toml").is_file() and (checkout / "src" / "servekit").is_dir()
