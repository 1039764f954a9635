"""`load_settings`: defaults, `SERVEKIT_*` variables, a YAML file, and their precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servekit import settings as defaults
from servekit.errors import InvalidInput
from servekit.settings import RunnerSettings, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SERVEKIT_* variable from the test runner's environment (or conftest) leaks in."""
    for name in list(os.environ):
        if name.startswith("SERVEKIT_"):
            monkeypatch.delenv(name)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servekit.config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def invalid(*args: object, **kwargs: object) -> str:
    with pytest.raises(InvalidInput) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return info.value.message


def test_defaults() -> None:
    settings = load_settings()
    assert settings.models == []
    assert settings.home is None
    assert settings.host == defaults.DEFAULT_HOST == "127.0.0.1"
    assert settings.port == defaults.DEFAULT_PORT == 8000
    assert settings.workers == 1
    assert settings.trust is False
    assert settings.default_model is None
    assert settings.max_rows == defaults.DEFAULT_MAX_ROWS
    assert settings.max_body_bytes == defaults.DEFAULT_MAX_BODY_BYTES
    assert settings.docs is True
    assert settings.runner == RunnerSettings()
    assert settings.runner.max_batch_size == defaults.DEFAULT_MAX_BATCH_SIZE
    assert settings.runner.max_latency_ms == defaults.DEFAULT_MAX_LATENCY_MS
    assert settings.runner.max_queue == defaults.DEFAULT_MAX_QUEUE
    assert settings.runner.timeout_s == defaults.DEFAULT_TIMEOUT_S
    assert settings.runner.batching is True


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVEKIT_PORT", "9001")
    monkeypatch.setenv("SERVEKIT_HOME", str(tmp_path))
    monkeypatch.setenv("SERVEKIT_TRUST", "true")
    monkeypatch.setenv("SERVEKIT_MODELS", '["iris", "churn@production"]')
    monkeypatch.setenv("SERVEKIT_RUNNER__MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SERVEKIT_RUNNER__BATCHING", "false")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.home == tmp_path
    assert settings.trust is True
    assert settings.models == ["iris", "churn@production"]
    assert settings.runner.max_batch_size == 7
    assert settings.runner.batching is False
    assert settings.runner.max_queue == defaults.DEFAULT_MAX_QUEUE


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    assert load_settings().port == defaults.DEFAULT_PORT


def test_yaml_file(tmp_path: Path) -> None:
    path = config(tmp_path, "port: 7000\nhost: 0.0.0.0\nmodels: [a, b]\nrunner:\n  max_queue: 5\n  timeout_s: 1.5\n")
    settings = load_settings(path)
    assert settings.port == 7000
    assert settings.host == "0.0.0.0"
    assert settings.models == ["a", "b"]
    assert settings.runner.max_queue == 5
    assert settings.runner.timeout_s == 1.5
    assert settings.runner.max_batch_size == defaults.DEFAULT_MAX_BATCH_SIZE


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path, "")) == Settings()


def test_precedence_flags_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = config(tmp_path, "port: 7000\nhost: 10.0.0.1\nmax_rows: 5\n")
    monkeypatch.setenv("SERVEKIT_PORT", "9000")
    monkeypatch.setenv("SERVEKIT_HOST", "10.0.0.2")
    settings = load_settings(path, port=1234)
    assert settings.port == 1234  # flag
    assert settings.host == "10.0.0.2"  # environment over file
    assert settings.max_rows == 5  # file over default


def test_flags_given_as_none_do_not_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVEKIT_PORT", "9000")
    settings = load_settings(config(tmp_path, "host: 10.0.0.1\n"), port=None, host=None)
    assert settings.port == 9000
    assert settings.host == "10.0.0.1"


def test_nested_flag_overrides_file(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, "runner:\n  max_batch_size: 3\n"), runner={"max_batch_size": 8})
    assert settings.runner.max_batch_size == 8


def test_nested_environment_variable_keeps_the_rest_of_the_file_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVEKIT_RUNNER__MAX_BATCH_SIZE", "7")
    settings = load_settings(config(tmp_path, "runner:\n  max_batch_size: 3\n  max_queue: 5\n"))
    assert settings.runner.max_batch_size == 7
    assert settings.runner.max_queue == 5


def test_invalid_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert invalid(port=-1) == "invalid setting 'port': Input should be greater than or equal to 0"
    assert invalid(config(tmp_path, "port: 70000\n")) == (
        "invalid setting 'port': Input should be less than or equal to 65535"
    )
    assert invalid(config(tmp_path, "runner:\n  max_batch_size: 0\n")) == (
        "invalid setting 'runner.max_batch_size': Input should be greater than or equal to 1"
    )
    assert invalid(config(tmp_path, "runner:\n  timeout_s: 0\n")) == (
        "invalid setting 'runner.timeout_s': Input should be greater than 0"
    )
    assert invalid(config(tmp_path, "trust: maybe\n")).startswith("invalid setting 'trust': ")
    assert invalid(config(tmp_path, "models: iris\n")) == "invalid setting 'models': Input should be a valid list"
    monkeypatch.setenv("SERVEKIT_PORT", "abc")
    assert invalid().startswith("invalid setting 'port': Input should be a valid integer")


def test_environment_value_invalid_in_a_nested_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_RUNNER__MAX_QUEUE", "0")
    assert invalid() == "invalid setting 'runner.max_queue': Input should be greater than or equal to 1"


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    assert invalid(config(tmp_path, "colour: red\n")) == "invalid setting 'colour': Extra inputs are not permitted"


def test_unknown_key_in_a_nested_section_of_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"runner\.max_batch"):
        load_settings(config(tmp_path, "runner:\n  max_batch: 8\n"))


def test_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = config(tmp_path, "- port\n- host\n")
    assert invalid(path) == f"the config file {path} must be a mapping of settings"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert invalid(path).startswith(f"cannot read the config file {path}: ")


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = config(tmp_path, "port: [\n")
    assert invalid(path).startswith(f"cannot read the config file {path}: ")


def test_invalid_yaml_file_is_a_one_line_message(tmp_path: Path) -> None:
    assert "\n" not in invalid(config(tmp_path, "port: [\n"))
