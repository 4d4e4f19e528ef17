import json
import os

# -P gevent: monkey-patch before anything else is imported (as Celery's entry point does), so every
# socket, lock and thread the engine makes is gevent's. The worker process is exec'd with its spec.
if json.loads(os.environ.get("_TQCTL_WORKER_SPEC") or "{}").get("pool") == "gevent":
    from gevent import monkey

    monkey.patch_all()

from tqctl.worker_process import SPEC_ENV  # noqa: E402 - after the patch above


def _entry() -> None:
    if os.environ.get(SPEC_ENV):  # ``tqctl worker`` exec'd into the lean worker process
        from tqctl.worker_process import main

        main()
    else:
        from tqctl.cli import main as cli

        cli()


_entry()
