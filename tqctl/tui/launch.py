"""Opening the console, and ``tqctl up``: start the broker, workers and beat as children, watch
them, and on leaving stop them (or leave them running). ``commands.py`` maps options onto these
functions; errors are ``LaunchError`` with a one-line message (exit 1), or a usage error (exit 2)
through ``tqctl.output.fail``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqctl.termination import Terminated, terminated_by


class LaunchError(Exception):
    pass


def _quiet(say: Any) -> Any:
    """``say`` that never fails: after a hangup the terminal is gone and a write to it raises."""

    def line(text: str) -> None:
        try:
            say(text)
        except (OSError, ValueError):
            pass

    return line


@dataclass
class Owned:
    """Processes ``tqctl up`` started: ``(label, process, log path)``."""

    detach: bool = False
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def alive(self) -> bool:
        return any(p.poll() is None for _, p, _ in self.procs)

    def describe(self) -> str:
        workers = sum(1 for label, p, _ in self.procs if label.startswith("worker") and p.poll() is None)
        beat = any(label == "beat" and p.poll() is None for label, p, _ in self.procs)
        parts = [f"{workers} worker{'' if workers == 1 else 's'}"] if workers else []
        if beat:
            parts.append("beat")
        return " and ".join(parts) or "nothing still running"

    def stop(self, timeout: float = 30.0, say: Any = None) -> None:
        """Warm stop (SIGTERM: running tasks finish), then SIGKILL what is left after ``timeout``."""
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for label, proc, _ in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                if say:
                    say(f"{label} (pid {proc.pid}) did not stop in {timeout:.0f}s: killing it")
                proc.kill()
                proc.wait(5)

    def summary(self) -> list[str]:
        return [f"{label}: pid {p.pid}, log {log}" for label, p, log in self.procs if p.poll() is None]


def resolve(broker: str | None, state_dir: str) -> tuple[str, bool]:
    """(URL, given explicitly). Starts the bundled broker when nothing is configured."""
    from engine.broker.connect import connect
    from engine.broker.inspect import is_sqs
    from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
    from tqctl.client import resolve_broker_url

    explicit = bool(broker or os.environ.get("TQCTL_BROKER"))
    try:
        url = resolve_broker_url(broker or None, state_dir)
        if is_sqs(url):  # it said "unsupported broker URL scheme 'sqs' (use redis://…)"
            raise LaunchError(
                "the console does not open on an SQS broker: it watches workers through events and "
                "remote control, which SQS cannot carry (as in Celery); use tqctl queues, purge, dead, "
                "and with TQCTL_BACKEND tasks, failures and retry"
            )
        connect(url).close()  # checks the scheme only; the console reconnects by itself
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        raise LaunchError(str(exc)) from None
    return url, explicit


def aimed(app: Any, url: str) -> Any:
    """The app given with -A, on the cluster the console shows. Its own lookup (its setting, else
    ``TQCTL_BROKER``, else a bundled broker in ./.tqctl) can name another server: with ``--broker
    URL``, ``--state-dir DIR`` or under ``tqctl up`` the Scheduled screen read beat's state from a
    second bundled broker it started in the current folder ("no beat is running"), and its
    run-now and enable/disable acted there."""
    if app is not None:
        app.conf.broker_url = url
    return app


def _check_state(url: str, app: Any) -> None:
    """On AMQP the workers keep revokes and history on a Redis result backend: without one they
    would not start, so say so before starting anything."""
    from engine.broker.inspect import is_amqp, state_url
    from engine.config import env_backend_url

    backend = (app.conf.result_backend if app is not None else None) or env_backend_url()
    if is_amqp(url) and state_url(url, backend) is None:
        raise LaunchError(
            "workers on an AMQP broker need a Redis result backend (the app's result_backend or "
            "TQCTL_BACKEND=redis://...): their revokes and history are kept there"
        )


def load(app_spec: str | None) -> Any:
    if not app_spec:
        return None
    from tqctl.loader import AppNotFound, load_app

    try:
        return load_app(app_spec)
    except AppNotFound as exc:
        raise LaunchError(str(exc)) from None


def open_console(
    *,
    broker: str | None,
    state_dir: str,
    read_only: bool,
    app_spec: str | None,
    demo: bool,
    owned: Owned | None = None,
    url: str | None = None,
    explicit: bool = False,
) -> str | None:
    """Run the console in this terminal; returns what the operator chose on leaving (``stop``/``leave``)."""
    from tqctl.tui.app import TqctlApp
    from tqctl.tui.audit import AuditLog
    from tqctl.tui.nocolor import few_colours

    if demo:
        from tqctl.tui.demo import AUDIT, DemoSource, demo_clock

        app = TqctlApp(
            DemoSource(), read_only=read_only, audit=AuditLog(None, list(AUDIT)), clock=demo_clock, ansi=few_colours()
        )
        return ended(app, app.run())
    from tqctl.tui.feed import LiveSource

    engine_app = load(app_spec)
    if url is None:
        url, explicit = resolve(broker, state_dir)
    source = LiveSource(url, aimed(engine_app, url), app_spec, explicit_url=explicit)
    app = TqctlApp(source, read_only=read_only, audit=AuditLog.in_state_dir(state_dir), owned=owned, ansi=few_colours())
    return ended(app, app.run())


def ended(app: Any, choice: str | None) -> str | None:
    """What the operator chose, or a ``LaunchError`` when the console stopped on an error of its
    own: Textual prints the error and returns, and the process then exited 0 as if all was well
    (``up`` stops what it started on this error, as on any other)."""
    if app.return_code:
        raise LaunchError("the console stopped on an internal error (shown above)")
    return choice


def _start(owned: Owned, commands: list[tuple[str, list[str]]], logs: Path, env: dict[str, str]) -> None:
    """Each command as a child in a session of its own (Ctrl-C in the console never reaches it),
    its output to its log; one that exits at once is a ``LaunchError`` quoting its log's tail."""
    for label, argv in commands:
        log = logs / f"up-{label.replace(' ', '-')}.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        owned.procs.append((label, proc, log))
    time.sleep(0.3)
    dead = [(label, log) for label, p, log in owned.procs if p.poll() is not None]
    if dead:
        label, log = dead[0]
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise LaunchError(f"{label} exited at once: {' | '.join(tail) or 'no output'} (log: {log})")


def has_terminal() -> bool:
    """Whether the console has a terminal to draw in: with stdin or stdout a pipe or a file it
    would write its escape codes there and wait for keys nobody can type."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _need_terminal() -> None:
    """Plain ``tqctl up`` without a terminal is a usage error, found before anything starts."""
    if not has_terminal():
        from tqctl.output import EXIT_USAGE, fail

        fail(
            "tqctl up opens the console, but stdin or stdout is not a terminal: "
            "pass --detach to start them without it and leave them running",
            EXIT_USAGE,
        )


def _report_detached(owned: Owned) -> None:
    """``--detach``: what was started, on stdout (one line each, then the kill line), for scripts."""
    from tqctl.output import emit_line

    for line in owned.summary():
        emit_line(f"started {line}")
    pids = " ".join(str(p.pid) for _, p, _ in owned.procs if p.poll() is None)
    if pids:
        emit_line(f"stop them with: kill {pids}")


def up(
    *,
    app_spec: str,
    concurrency: int,
    workers: int,
    beat: bool,
    detach: bool,
    pool: str,
    queues: str,
    broker: str | None,
    state_dir: str,
    read_only: bool,
    say: Any,
) -> None:
    """``tqctl up``: broker, ``workers`` worker processes (and beat), then the console on them;
    with ``detach``, no console: their pids are printed and they are left running."""
    engine_app = load(app_spec)  # fail fast on a wrong -A, before anything starts
    if not detach:
        _need_terminal()  # before the bundled broker or any child starts: nothing is left running
    url, explicit = resolve(broker, state_dir)
    _check_state(url, engine_app)
    from engine.bundled import StateFolderError, make_state_folder

    try:
        logs = make_state_folder(Path(state_dir).expanduser() / "logs", mode=0o777)
    except StateFolderError as exc:
        raise LaunchError(str(exc)) from None
    env = {**os.environ, "TQCTL_BROKER": url}  # the URL (and its password) only here: argv shows in ``ps``
    owned = Owned(detach=detach)
    base = [sys.executable, "-m", "tqctl"]
    commands = []
    for i in range(1, workers + 1):
        argv = [*base, "worker", "-A", app_spec, "-n", f"up{i}@%h", "-P", pool, "-l", "info"]
        if concurrency:
            argv += ["-c", str(concurrency)]
        if queues:
            argv += ["-Q", queues]
        commands.append((f"worker up{i}", argv))
    if beat:
        commands.append(("beat", [*base, "beat", "-A", app_spec]))
    # A hangup (terminal or SSH session gone) or SIGTERM, with nobody to ask: the warm stop.
    with nullcontext() if detach else terminated_by(signal.SIGHUP, signal.SIGTERM):
        try:
            _start(owned, commands, logs, env)
            if detach:
                _report_detached(owned)
                return
            choice = open_console(
                broker=broker,
                state_dir=state_dir,
                read_only=read_only,
                app_spec=app_spec,
                demo=False,
                owned=owned,
                url=url,
                explicit=explicit,
            )
        except Terminated as end:
            quiet = _quiet(say)
            if owned.alive():
                quiet(f"{signal.Signals(end.signum).name}: stopping {owned.describe()} (warm: running tasks finish)…")
            owned.stop(30.0, quiet)  # as leaving with "stop" does
            raise
        except BaseException:
            owned.stop(10.0, say)
            raise
    if choice == "leave":
        for line in owned.summary():
            say(f"left running: {line}")
        pids = " ".join(str(p.pid) for _, p, _ in owned.procs if p.poll() is None)
        if pids:
            say(f"stop them with: kill {pids}")
    elif owned.alive():
        say(f"stopping {owned.describe()} (warm: running tasks finish)…")
        owned.stop(30.0, say)
        # Said, not left to guess: the wait above ends silently, and the bundled broker is not stopped.
        say("stopped" if explicit else "stopped; the bundled broker stays up (tqctl broker stop ends it)")
