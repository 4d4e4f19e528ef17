"""``tqctl serve``: the same Textual console, in a browser, through textual-serve.

Each browser tab gets its own ``tqctl console`` process. What keeps it safe to leave running:
- loopback (127.0.0.1) by default; any other address needs a token, read from
  ``TQCTL_SERVE_TOKEN`` or ``--token-file``, never from the command line (``ps`` shows argv to
  every user), never printed. The browser sends it once, in a login form (not the URL, which
  lands in history and access logs), and gets a session cookie (HttpOnly, SameSite=Strict);
  scripts may send ``Authorization: Bearer <token>``;
- on loopback without a token, only loopback host names are served (a page on another site
  that rebinds its name to 127.0.0.1 gets a 403), and on every address the websocket refuses an
  ``Origin`` other than the page's own (no other site can drive the console from a browser);
- read-only unless ``--write``: the console runs with ``--read-only``, so write actions are
  hidden, refused with a notice, and ``RO`` shows in its header;
- the broker URL (and its password) reaches the console processes in ``TQCTL_BROKER``, not argv.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import os
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from engine.extras import install_hint
from tqctl.output import EXIT_USAGE, fail, note
from tqctl.tui.commands import AppSpec, Broker, Demo, StateDir

if TYPE_CHECKING:
    from aiohttp import web

TOKEN_ENV = "TQCTL_SERVE_TOKEN"
MIN_TOKEN = 16
COOKIE = "tqctl_session"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
DEFAULT_PORT = 8808
Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def serve(
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="port to listen on")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="address to listen on; not loopback needs a token")] = "127.0.0.1",
    write: Annotated[bool, typer.Option("--write", help="allow actions that change the cluster")] = False,
    token_file: Annotated[
        str, typer.Option("--token-file", help=f"file holding the access token (else ${TOKEN_ENV})")
    ] = "",
    max_sessions: Annotated[int, typer.Option("--max-sessions", min=1, max=256, help="browser tabs at once")] = 16,
    broker: Broker = "",
    state_dir: StateDir = ".tqctl",
    app_spec: AppSpec = "",
    demo: Demo = False,
) -> None:
    """Serve the console to a browser (http://127.0.0.1:8808 by default), read-only unless --write."""
    token = read_token(token_file)
    if not is_loopback(host) and token is None:
        fail(f"listening on {host} needs a token: set {TOKEN_ENV} or pass --token-file PATH", EXIT_USAGE)
    try:
        from textual_serve.server import Server  # noqa: F401 - an optional extra: check before any work
    except ImportError:
        fail(f"tqctl serve needs textual-serve: {install_hint('serve')}", EXIT_USAGE)
    url = None
    if not demo:
        from tqctl.tui.launch import LaunchError, load, resolve

        try:
            load(app_spec or None)  # a wrong -A fails here, in one line, not in every browser tab
            url, _ = resolve(broker or None, state_dir)
        except LaunchError as exc:
            fail(str(exc))
    mode = "read-and-write (--write)" if write else "read-only (--write allows actions)"
    ready = f"tqctl serve: the console on http://{_url_host(host)}:{port}/ · {mode}"
    ready += " · token required" if token else ""
    server = make_server(console_command(write, state_dir, app_spec, demo), host, port, token, max_sessions, ready)
    # What each console process inherits (textual-serve copies os.environ): the broker URL, with its
    # password, travels here rather than in argv; the token stays with us.
    os.environ.pop(TOKEN_ENV, None)
    os.environ["TQCTL_READ_ONLY_HINT"] = "tqctl serve without --write"
    if url:
        os.environ["TQCTL_BROKER"] = url
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not this machine's
        fail(f"cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}")


def read_token(token_file: str) -> str | None:
    """The token from the file (first line) or the environment; too short a token is refused."""
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            reason = "it is empty" if isinstance(exc, IndexError) else str(getattr(exc, "strerror", exc))
            fail(f"cannot read the token file {token_file}: {reason}", EXIT_USAGE)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
    if len(token) < MIN_TOKEN:
        fail(f"the token is too short: use at least {MIN_TOKEN} characters (e.g. openssl rand -hex 16)", EXIT_USAGE)
    return token


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def console_command(write: bool, state_dir: str, app_spec: str, demo: bool) -> str:
    argv = [sys.executable, "-m", "tqctl", "console", "--state-dir", state_dir]
    if not write:
        argv.append("--read-only")
    if app_spec:
        argv += ["-A", app_spec]
    if demo:
        argv.append("--demo")
    return shlex.join(argv)


def make_server(command: str, host: str, port: int, token: str | None, max_sessions: int, ready: str) -> Any:
    """A textual-serve ``Server`` with the guard in front of every route; ``ready`` is printed once
    the port is bound (not before: a script waiting for the line may connect at once)."""
    import asyncio
    import signal

    from aiohttp import web
    from textual_serve.server import Server

    guard = Guard(token, loopback_only=is_loopback(host) and token is None)

    class GuardedServer(Server):  # type: ignore[misc]
        sessions = 0

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard.middleware)
            app.router.add_post("/login", guard.login)
            return app

        async def handle_index(self, request: web.Request) -> Any:
            # URLs in the page follow the address the browser used, not the one we listen on (0.0.0.0).
            self.public_url = f"{_scheme(request)}://{request.host}"
            return await super().handle_index(request)

        async def handle_websocket(self, request: web.Request) -> Any:
            if self.sessions >= max_sessions:
                raise web.HTTPServiceUnavailable(text=f"{max_sessions} consoles are open already")
            self.sessions += 1
            try:
                return await super().handle_websocket(request)
            finally:
                self.sessions -= 1

        async def on_startup(self, app: web.Application) -> None:
            """Quiet: the one line is ``ready``, printed by ``serve`` below."""

        def serve(self, debug: bool = False) -> None:
            """textual-serve's, printing ``ready`` once listening."""
            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_exit)
            web.run_app(
                self._make_app(),
                host=self.host,
                port=self.port,
                handle_signals=False,
                loop=loop,
                print=lambda *_: note(ready),
            )

    return GuardedServer(command, host=host, port=port, title="tqctl console")


class Guard:
    """Who may load the page and open a console: checks the Host, the Origin, and the token."""

    def __init__(self, token: str | None, loopback_only: bool) -> None:
        self.token = token
        self.loopback_only = loopback_only
        self.session = secrets.token_urlsafe(32)  # the cookie's value: valid until the server stops

    def _token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _signed_in(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self._token_ok(given.strip())

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()

    def _host_ok(self, request: web.Request) -> bool:
        if not self.loopback_only:
            return True
        name = urlsplit(f"//{request.host}").hostname or ""
        return name.lower() in LOOPBACK_NAMES or is_loopback(name)

    @property
    def middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self._host_ok(request):
                raise web.HTTPForbidden(text="this console answers on its loopback address only")
            if request.path == "/ws" and not self._same_origin(request):
                raise web.HTTPForbidden(text="the console's websocket takes connections from its own page only")
            if request.path == "/login" or self._signed_in(request):
                return await handler(request)
            if request.method == "GET" and request.path == "/":
                return login_page()
            raise web.HTTPUnauthorized(text="sign in first")

        return guard

    async def login(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        if not self._same_origin(request):
            raise web.HTTPForbidden(text="sign in from the console's own page")
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not self._token_ok(given.strip()):
            return login_page("wrong token", status=401)
        response = web.HTTPSeeOther("/")
        secure = _scheme(request) == "https"
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="Strict", secure=secure, path="/")
        return response


def _scheme(request: web.Request) -> str:
    """https behind a TLS-terminating proxy that says so (the page's websocket must then be wss://).
    Trusting the header is harmless: it only shapes the page sent back to the same client."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded if forwarded in ("http", "https") else request.scheme


def login_page(message: str = "", status: int = 200) -> web.Response:
    from aiohttp import web

    error = f'<p class="error">{html.escape(message)}</p>' if message else ""
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tqctl console: sign in</title>
<style>body{{background:#0c181f;color:#eee;font-family:monospace;display:flex;justify-content:center;
margin-top:20vh}} input,button{{font:inherit;padding:.4em}} .error{{color:#f77}}</style></head>
<body><form method="post" action="/login"><h1>tqctl console</h1>{error}
<p><label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></p></form></body></html>"""
    return web.Response(text=body, content_type="text/html", status=status)
