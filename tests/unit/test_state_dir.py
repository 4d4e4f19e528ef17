"""Where an app with no broker starts the bundled server: the same folder the CLI uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import App, bundled
from engine.config import Settings, state_dir


def test_the_variable_is_read_unless_the_app_names_a_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQCTL_STATE_DIR", "/srv/queue-state")
    assert state_dir(Settings()) == "/srv/queue-state"
    assert state_dir(Settings(tqctl_state_dir="/opt/mine")) == "/opt/mine"
    monkeypatch.delenv("TQCTL_STATE_DIR")
    assert state_dir(Settings()) == ".tqctl"


def test_an_app_without_a_broker_starts_the_server_in_tqctl_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TQCTL_BROKER", raising=False)
    monkeypatch.setenv("TQCTL_STATE_DIR", str(tmp_path))
    app = App("nobroker")
    try:
        url = app.broker_url()
        assert str(tmp_path) in url and (tmp_path / "server.json").exists()
        app.broker.ping()
    finally:
        app.close()
        bundled.stop(tmp_path)
