"""What the scripted ops commands share: options, one cluster session, error mapping, parsing, times.

Every command opens the cluster through session(): it resolves --broker (else
TQCTL_BROKER, else the bundled broker), opens connections lazily, and turns every broker
failure into ONE line on stderr naming host:port with the password masked, exit 1.
"""

from __future__ import annotations

import datetime as dt
import re
import signal as signals
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer

from engine.broker.inspect import SERVER_ERROR, UNREACHABLE
from engine.config import env_backend_url
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.redisconn import REDIS_SCHEMES, client_from_url, describe_error
from tqctl.client import bounded_calls, resolve_broker_url
from tqctl.commands.values import finite_option, names_option, url_option
from tqctl.output import EXIT_NO_REPLY, EXIT_USAGE, emit_json, fail, note

if TYPE_CHECKING:
    from engine.broker.base import Broker as BrokerConnection

# -- options (one definition each, shared by every command) ----------------------------------
Broker = Annotated[
    str,
    typer.Option(
        "--broker",
        envvar="TQCTL_BROKER",
        callback=url_option,
        help="Broker URL (default: TQCTL_BROKER, else the bundled broker).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (one document; JSON Lines for streams).")]
MAX_TIMEOUT = 86_400.0  # a day: beyond it a socket timeout overflows, and no reply is that slow
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout", "-t", min=0, max=MAX_TIMEOUT, callback=finite_option, help="Seconds to wait for worker replies."
    ),
]
Destination = Annotated[
    str,
    typer.Option(
        "--destination",
        "-d",
        callback=names_option("node name"),
        help="Comma-separated node names, e.g. w1@host,w2@host (default: all).",
    ),
]
BrokerTimeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        "-t",
        min=0,
        max=MAX_TIMEOUT,
        callback=finite_option,
        help="Seconds to wait for the broker (to connect, and for each reply).",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print what would be touched; change nothing.")]
Backend = Annotated[
    str,
    typer.Option(
        "--backend", envvar="TQCTL_BACKEND", callback=url_option, help="Result backend URL (default: the broker)."
    ),
]

# The AMQP fanout (events, remote control) fails with the builtin ConnectionError, as a socket does.
BROKER_ERRORS: tuple[type[BaseException], ...] = (*UNREACHABLE, ConnectionError)


# -- one cluster, opened lazily --------------------------------------------------------------
class Cluster:
    """The connections one command needs to one broker; each opened on first use."""

    def __init__(self, url: str, backend: str = "", timeout: float | None = None) -> None:
        self.backend_url = backend
        self.timeout = timeout if timeout and timeout > 0 else None  # socket timeout for broker replies
        self.url = bounded_calls(url, self.timeout)  # each SQS call gives up after it too

    def _client(self, read_timeout: float) -> Any:
        """A Redis client that gives up on a broker that accepts but never answers (None: not Redis)."""
        if urlsplit(self.url).scheme.lower() not in REDIS_SCHEMES:
            return None
        return client_from_url(self.url, socket_connect_timeout=min(read_timeout, 5.0), socket_timeout=read_timeout)

    @property
    def is_amqp(self) -> bool:
        from engine.broker.inspect import is_amqp

        return is_amqp(self.url)

    @property
    def is_sqs(self) -> bool:
        from engine.broker.inspect import is_sqs

        return is_sqs(self.url)

    def not_on_sqs(self, what: str) -> None:
        """One line naming what an SQS broker does not give this command."""
        if self.is_sqs:
            raise ImproperlyConfigured(f"{what} is not available on an SQS broker")

    @property
    def state_backend(self) -> str | None:
        """On AMQP: the Redis result backend keeping revokes, history and failures (--backend,
        TQCTL_BACKEND); None when there is none."""
        from engine.broker.inspect import state_url

        return state_url(self.url, self.backend_url or env_backend_url())

    def needs_state(self, what: str) -> None:
        """One line when an AMQP or SQS broker has no Redis result backend to keep ``what`` on."""
        if (self.is_amqp or self.is_sqs) and self.state_backend is None:
            kind = "an SQS" if self.is_sqs else "an AMQP"
            raise ImproperlyConfigured(
                f"on {kind} broker, {what} are kept on the Redis result backend: set "
                "TQCTL_BACKEND=redis://... (the workers' result_backend)"
            )

    @cached_property
    def view(self) -> Any:
        """Queues, delayed tasks, history and results, read the transport's own way."""
        from engine.broker.inspect import open_view

        client = self._client(self.timeout) if self.timeout else None
        return open_view(self.url, self.state_backend, client)

    @cached_property
    def control(self) -> Any:
        from engine.control import Control

        if self.is_sqs:  # as in Celery: SQS has no broadcast, so workers on it hear no commands
            raise ImproperlyConfigured(
                "remote control (inspect, control, status, workers) does not exist on an SQS broker, as in "
                "Celery: SQS has no broadcast, so its workers hear no commands and send no events"
            )
        if self.is_amqp:  # requests on celery.pidbox, replies on reply.celery.pidbox, as Celery's
            from engine.broker.inspect import open_fanout

            return Control(self.url, fanout=open_fanout(self.url, self.state_backend))

        # Worker commands open the session with their --timeout + 1 s, and a reply is awaited with a
        # blocking pop of up to --timeout: a second more keeps the socket from giving up first.
        return Control(self.url, self._client(self.timeout + 1.0) if self.timeout else None)

    @cached_property
    def broker(self) -> Any:
        from engine.broker import connect

        client = self._client(self.timeout) if self.timeout else None
        found: BrokerConnection
        if client is not None:
            from engine.broker.redis import RedisBroker

            found = RedisBroker(self.url, client=client)
        else:
            found = connect(self.url)
        return found

    @cached_property
    def history(self) -> Any:
        self.needs_state("task history and the failure inbox (tasks, task, failures, retry, discard)")
        return self.view.history

    @cached_property
    def app(self) -> Any:
        from engine.app import App

        app = App("tqctl", broker=self.url, backend=self.backend_url or None)
        if self.timeout:
            app._broker = self.broker  # publish through the connection that honours --timeout
        return app

    def sign(self, raw: bytes) -> bytes:
        """A message this command rewrote (a retry, a run-now), signed when signing is on."""
        signer = self.app.signer
        return signer.sign(raw) if signer is not None else raw

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        self.broker.publish(queue, self.sign(raw), priority)

    def events(self) -> Any:
        from engine.broker.inspect import open_fanout
        from engine.events.receiver import EventReceiver

        self.not_on_sqs("listening to task events (tail, queues' rates)")  # SQS workers send none, as in Celery
        # On AMQP: the celeryev topic exchange (no stored state needed to listen).
        return EventReceiver(self.url, open_fanout(self.url, self.state_backend))

    def close(self) -> None:
        for name in ("control", "broker", "view", "app"):
            conn = self.__dict__.get(name)
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # closing is best effort; the command already has its answer
                    pass


class NoReply(BaseException):
    """The broker took the connection but did not answer in time. Not an ``Exception``: the
    engine's best-effort steps (the result subscription) would swallow it and carry on waiting;
    ``session`` reports it as it reports an unreachable broker (one line, exit 1)."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """The whole block within ``seconds``. Each socket read waits up to the timeout, but one send
    makes several (the result subscription, the publish and its fallback, the client library's
    retries): `call -t 10` against a broker that never answered took 25 s. SIGALRM interrupts the
    read under way instead. Only on the main thread (where Python runs signal handlers)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise NoReply(f"Timeout: no reply within {seconds:g}s")

    before = signals.signal(signals.SIGALRM, expire)
    signals.setitimer(signals.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signals.setitimer(signals.ITIMER_REAL, 0)
        signals.signal(signals.SIGALRM, before)


@contextmanager
def session(broker: str, backend: str = "", timeout: float | None = None) -> Iterator[Cluster]:
    """A Cluster for --broker; broker failures inside the block become one line, exit 1."""
    url = ""
    try:
        url = resolve_broker_url(broker or None)
        cluster = Cluster(url, backend, timeout)
        try:
            yield cluster
        finally:
            cluster.close()
    except BrokerUnavailable as exc:
        fail(str(exc))
    except ImproperlyConfigured as exc:
        fail(str(exc))
    except BROKER_ERRORS as exc:
        fail(describe_error(url, exc))
    except NoReply as exc:
        fail(describe_error(url, exc))
    except SERVER_ERROR as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            fail(describe_error(url, exc))
        fail(f"broker error: {exc}")


# -- node replies ----------------------------------------------------------------------------
def destinations(text: str) -> list[str] | None:
    """-d a@h,b@h → ["a@h", "b@h"]; empty → None (all workers)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


def is_error(reply: Any) -> bool:
    return isinstance(reply, dict) and "error" in reply


def node_rows(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Control replies [{node: body}] → [{name, ok, reply, error}], sorted by name."""
    rows = []
    for reply in replies:
        for name, body in reply.items():
            error = body["error"] if is_error(body) else None
            rows.append({"name": name, "ok": error is None, "reply": None if error else body, "error": error})
    return sorted(rows, key=lambda r: r["name"])


def no_reply(timeout: float, as_json: bool, document: dict[str, Any]) -> NoReturn:
    """Celery's status convention: nobody answered → exit 69 (the JSON document still prints)."""
    if as_json:
        emit_json(document)
    fail(f"no nodes replied within {timeout:g}s", EXIT_NO_REPLY)


# -- confirmation ----------------------------------------------------------------------------
def ask(prompt: str) -> str:
    """One answer, the question on stderr and nothing at all on stdout, which carries only the
    command's output (a --json document): click's prompt wrote its input(" ") there. End of input
    and Ctrl-C are the empty answer."""
    sys.stderr.write(prompt + " ")
    sys.stderr.flush()
    try:
        line = sys.stdin.readline()
    except (KeyboardInterrupt, OSError, ValueError):  # (ValueError: stdin closed)
        line = ""
    if not line.endswith("\n") or not sys.stdin.isatty():  # nothing echoed an Enter: end the line
        sys.stderr.write("\n")
        sys.stderr.flush()
    return line.strip()


def confirm(question: str, yes: bool, hint: str = " (pass --yes to skip this question)") -> None:
    """Ask unless --yes; anything but yes (or no terminal) aborts with nothing changed."""
    if not yes and ask(f"{question} [y/N]:").lower() not in ("y", "yes"):
        fail(f"aborted: nothing changed{hint}")


def confirm_typed(word: str, question: str, yes: bool) -> None:
    """For the most destructive verbs: the user must type word back."""
    if not yes and ask(f"{question} Type {word!r} to confirm:") != word:
        fail("aborted: nothing changed (pass --yes to skip this question)")


def send_revoke(
    cluster: Any, ids: list[str], terminate: bool, signal: str, destination: list[str] | None, timeout: float, yes: bool
) -> list[dict[str, Any]]:
    """Ask, store the revokes in the broker and tell the workers; shared by revoke and control revoke."""
    from engine.control import store_revoked

    cluster.needs_state("revokes (stored, so that a restarted worker keeps them)")
    confirm(f"revoke {len(ids)} task(s){f' and kill them with {signal}' if terminate else ''}?", yes)
    control = cluster.control
    store_revoked(control.fanout, ids)  # (a failure here: nothing changed, session's one line)
    try:  # on RabbitMQ the store is the Redis backend: it may have taken what the broker cannot
        replies = control.announce_revoke(ids, terminate, signal, destination, reply=True, timeout=timeout)
    except BROKER_ERRORS as exc:
        said = (
            "the revoke is stored (every worker reads it at its next heartbeat, within seconds) but "
            f"could not be broadcast: {describe_error(cluster.url, exc)}"
        )
        if terminate:
            fail(said + "; running tasks were not killed")
        note(f"tqctl: {said}")
        return []
    if not replies:
        where = "result backend" if cluster.is_amqp else "broker"
        note(f"no worker replied: the revoke is stored in the {where} and applies when a worker starts")
    return node_rows(replies)


# -- parsing ---------------------------------------------------------------------------------
def usage(message: str) -> NoReturn:
    fail(message, EXIT_USAGE)


def parse_signal(name: str) -> str:
    """KILL, sigkill, 9 → SIGKILL; unknown names are a usage error."""
    text = name.strip().upper()
    if text.isdigit():
        try:
            return signals.Signals(int(text)).name
        except ValueError:
            usage(f"unknown signal {name!r}")
    text = text if text.startswith("SIG") else f"SIG{text}"
    if not isinstance(getattr(signals, text, None), signals.Signals):
        usage(f"unknown signal {name!r}: use e.g. SIGTERM, SIGKILL, SIGUSR1")
    return text


def parse_rate(text: str) -> float:
    """50/s, 100/m, 10 → per second; a usage error when it is not a positive rate."""
    from engine.ratelimit import parse_rate as engine_parse_rate

    try:
        value = engine_parse_rate(text)
    except ValueError as exc:
        usage(str(exc))
    if not value:
        usage(f"bad rate {text!r}: use a positive N/s, N/m or N/h")
    return float(value)


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """30s, 10m, 2h, 1d ago, or an ISO-8601 time → POSIX seconds."""
    match = _AGO.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2).lower()]
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        usage(f"bad --since {text!r}: use 30s, 10m, 2h, 1d or an ISO-8601 time")
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()


# -- times -----------------------------------------------------------------------------------
def iso(ts: Any) -> str | None:
    """POSIX seconds → ISO-8601 UTC (what every --json time is); anything else → None."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def warn(text: str) -> None:
    note(f"tqctl: warning: {text}")
