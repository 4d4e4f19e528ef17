"""``tqctl serve``'s rules that need no server: where the token comes from, what counts as
loopback, and the console command each browser tab runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tqctl.commands.serve import TOKEN_ENV, console_command, is_loopback, read_token

GOOD = "0123456789abcdef0123"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the token file {path}: No such file or directory"),
        ("", "cannot read the token file {path}: it is empty"),
        ("short\n", "the token is too short: use at least 16 characters (e.g. openssl rand -hex 16)"),
    ],
)
def test_a_bad_token_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(typer.Exit) as exited:
        read_token(str(path))
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err == f"tqctl: error: {message.format(path=path)}\n"


def test_the_token_comes_from_the_file_first_line_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {GOOD}  \nsecond line ignored\n")
    monkeypatch.setenv(TOKEN_ENV, "x" * 20)
    assert read_token(str(path)) == GOOD
    assert read_token("") == "x" * 20
    monkeypatch.delenv(TOKEN_ENV)
    assert read_token("") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True)]
    + [("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_each_tab_runs_a_read_only_console_unless_write_and_no_url_is_in_argv() -> None:
    assert console_command(False, ".tqctl", "", False).endswith("console --state-dir .tqctl --read-only")
    assert "--read-only" not in console_command(True, ".tqctl", "shop", True)
    assert console_command(True, "/s d", "shop", True).endswith("--state-dir '/s d' -A shop --demo")
