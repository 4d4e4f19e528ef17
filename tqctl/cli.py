"""Root of the ``tqctl`` command: one Typer per noun, composed here.

Every command maps expected failures to one line on stderr and a documented exit code;
``main()`` is the last net for anything that slips through, so users never see a traceback.
"""

from __future__ import annotations

import sys

import typer

from tqctl.commands import (
    beat,
    bench,
    broker,
    cluster,
    dead,
    delayed,
    demo,
    failures,
    health,
    metrics,
    ops,
    queues,
    serve,
    tasks,
    worker,
)
from tqctl.output import EXIT_ERROR, EXIT_OK, error_line
from tqctl.pipes import ReaderGone, guard_stdout, leave_quietly
from tqctl.tui import commands as console

app = typer.Typer(
    name="tqctl",
    help="Run and watch a Celery-compatible task queue from the terminal.",
    no_args_is_help=False,  # no command: the console (tqctl.tui.commands.root)
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback(invoke_without_command=True)(console.root)
app.command("console")(console.console)
app.command("up")(console.up)
app.add_typer(broker.app, name="broker")
app.add_typer(dead.app, name="dead")
app.add_typer(beat.app, name="beat")
app.command("worker")(worker.worker)
app.command("demo")(demo.demo)
app.command("bench")(bench.bench)
app.command("metrics")(metrics.metrics)
app.command("health")(health.health)
app.command("serve")(serve.serve)

# Scripted ops commands (one module per noun; shared helpers in tqctl/commands/common.py).
app.command("status")(ops.status)
app.command("inspect")(ops.inspect)
app.command("control")(ops.control)
app.command("workers")(cluster.workers)
app.command("queues")(cluster.queues)
app.command("purge")(queues.purge)
app.command("tasks")(tasks.tasks)
app.command("task")(tasks.task)
app.command("tail")(tasks.tail)
app.command("call")(tasks.call)
app.command("result")(tasks.result)
app.command("revoke")(tasks.revoke)
app.command("failures")(failures.failures)
app.command("retry")(failures.retry)
app.command("discard")(failures.discard)
app.command("run-now")(delayed.run_now)


def main() -> None:
    guard_stdout()  # a reader leaving (`| head -1`) is ReaderGone below, for every command
    try:
        # standalone_mode=False: Typer hands its usage errors to us instead of drawing a boxed
        # message of five lines; ``typer.Exit(code)`` (and Ctrl-C, as 130) come back as the value.
        code = app(standalone_mode=False)
        sys.stdout.flush()  # here, not at exit, where a reader gone would be "Exception ignored"
    except ReaderGone:
        leave_quietly()  # no text, 141 as coreutils' SIGPIPE (README "Exit codes")
    except typer.TyperException as exc:  # a bad flag, value, argument or command (Typer's click)
        message, ctx = exc.format_message().strip().rstrip("."), getattr(exc, "ctx", None)
        if message:  # (a group called without its command has just printed its help instead)
            error_line(message + (f" (try '{ctx.command_path} -h')" if ctx is not None else ""))
        sys.exit(exc.exit_code)  # 2 for usage errors
    except typer.Abort:  # end of input at a prompt
        error_line("aborted")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.stderr.write("tqctl: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # the last net: one line, never a traceback dump
        error_line(f"{type(exc).__name__}: {exc}")
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
