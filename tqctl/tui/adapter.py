"""The write side of the engine boundary (harlequin's adapter): every operator action lands here.

Screens never import the engine; they build an ``Action`` whose ``run`` calls one method of this
class inside a Textual thread worker. Each method blocks on the network and returns what the
cluster answered (the replies go to the audit log verbatim).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from engine.broker.connect import connect
from engine.broker.inspect import NotHere, open_fanout, open_view
from engine.control import Control
from engine.history import History
from engine.protocol import task as protocol
from engine.serialization import dumps, json_dumps
from engine.signing import from_env

Replies = list[dict[str, Any]]


class ActionError(Exception):
    """An action that cannot be done as asked; the message is shown to the operator as is."""


def no_stored_message(task_id: str) -> str:
    return (
        f"no stored message for {task_id} (only failures kept by tqctl workers "
        "can be retried as sent; use R to retry with edited arguments)"
    )


class Adapter:
    def __init__(self, url: str, app: Any = None, reply_timeout: float = 2.0, backend_url: str | None = None) -> None:
        self.url = url
        self.app = app
        self.reply_timeout = reply_timeout
        self.broker = connect(url)
        self.view = open_view(url, backend_url)
        # Signing (settings of -A APP, else TQCTL_SIGNING_KEYS): what the console sends must verify.
        self.signer = app.signer if app is not None else from_env()
        self.control = Control(url, signer=self.signer, fanout=open_fanout(url, backend_url))

    @property
    def history(self) -> History:
        """The stored history and failure inbox (on AMQP: on the Redis result backend)."""
        if self.view.history is None:
            raise ActionError(
                "this AMQP broker has no Redis result backend to keep history and failures on "
                "(set TQCTL_BACKEND or the app's result_backend)"
            )
        return self.view.history

    def close(self) -> None:
        self.control.close()
        self.broker.close()
        self.view.close()

    # -- workers ----------------------------------------------------------------------------------
    def command(self, method: str, workers: list[str], **arguments: Any) -> Replies:
        """A remote-control command to the named workers; their replies (missing ones = no answer)."""
        return self.control.broadcast(method, arguments, destination=list(workers), timeout=self.reply_timeout)

    def shutdown(self, workers: list[str]) -> Replies:
        """Warm shutdown; workers do not reply to it (Celery's behaviour), so nothing comes back."""
        self.control.broadcast("shutdown", destination=list(workers), reply=False)
        return [{w: {"ok": "shutdown sent (workers do not reply)"}} for w in workers]

    # -- tasks ------------------------------------------------------------------------------------
    def revoke(self, task_ids: list[str], terminate: bool = False, signal: str = "SIGTERM") -> Replies:
        return self.control.revoke(
            list(task_ids), terminate=terminate, signal=signal, reply=True, timeout=self.reply_timeout
        )

    def retry(self, task_id: str) -> str:
        """Republish a failed task's stored original message; returns the new task id."""
        try:
            return self.history.retry(task_id, self._publish)
        except KeyError:
            raise ActionError(no_stored_message(task_id)) from None

    def retry_with(self, task_id: str, name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None) -> str:
        """Send ``name(*args, **kwargs)`` again as a retry of ``task_id`` (linked by ``retry_of``)."""
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ActionError("args must be a JSON list and kwargs a JSON object")
        stored = self.history.failure(task_id)
        if stored is not None:
            raw, queue = self._rewrite(stored["raw"].encode(), task_id, args, kwargs), stored.get("queue") or queue
            envelope = json.loads(raw)
            self._publish(queue or "celery", raw, (envelope.get("properties") or {}).get("priority"))
            self.history.delete_failure(task_id)
            return envelope["headers"]["id"]
        new_id, raw = protocol.build(
            name, args, kwargs, queue=queue or "celery", root_id=None, headers={"retry_of": task_id}
        )
        self._publish(queue or "celery", raw)
        return new_id

    def _publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        self.broker.publish(queue, self._sign(raw), priority)

    def _sign(self, raw: bytes) -> bytes:
        """A message the console rewrote, signed again when signing is on (else exactly ``raw``)."""
        return self.signer.sign(raw) if self.signer is not None else raw

    @staticmethod
    def _rewrite(raw: bytes, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:
        envelope = json.loads(raw)
        body = json.loads(base64.b64decode(envelope["body"])) if envelope.get("body") else [[], {}, {}]
        embed = body[2] if isinstance(body, list) and len(body) == 3 else {}
        data, content_type = dumps([args, kwargs, embed], "json")
        new_id = protocol.new_id()
        envelope.update(body=base64.b64encode(data).decode(), **{"content-type": content_type})
        headers = envelope["headers"]
        headers.update(
            id=new_id,
            retries=0,
            retry_of=task_id,
            eta=None,
            argsrepr=protocol.safe_repr(tuple(args)),
            kwargsrepr=protocol.safe_repr(kwargs),
            sent_at=round(time.time(), 3),
        )
        headers["root_id"] = headers.get("root_id") or task_id
        props = envelope.setdefault("properties", {})
        props.update(correlation_id=new_id, delivery_tag=protocol.new_id(), body_encoding="base64")
        return json_dumps(envelope).encode()

    def stored_arguments(self, task_id: str) -> dict[str, Any] | None:
        """Full original args/kwargs of a stored failure, for editing before a retry."""
        stored = self.history.failure(task_id)
        if stored is None:
            return None
        try:
            message = protocol.decode(stored["raw"].encode(), frozenset({"application/json"}))
        except protocol.MalformedMessage:
            return None
        return {"args": message.args, "kwargs": message.kwargs, "queue": stored.get("queue"), "name": message.name}

    # -- failure inbox ----------------------------------------------------------------------------
    def group_members(self, fingerprint: str) -> list[str]:
        return [f["id"] for f in self.history.failures(100_000) if f.get("fingerprint") == fingerprint]

    def retry_group(
        self,
        ids: list[str],
        per_second: float,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Retry each id at most ``per_second`` a second; stops early when ``cancelled()``."""
        pause = 1.0 / per_second if per_second > 0 else 0.0
        done: dict[str, str] = {}
        errors: dict[str, str] = {}
        for n, task_id in enumerate(ids, 1):
            if cancelled is not None and cancelled():
                break
            try:
                done[task_id] = self.history.retry(task_id, self._publish)  # signed again, as one retry is
            except KeyError:
                errors[task_id] = "no longer in the inbox"
            if progress is not None:
                progress(n, len(ids))
            if pause and n < len(ids):
                time.sleep(pause)
        return {"retried": done, "errors": errors, "asked": len(ids)}

    def delete_failures(self, ids: list[str], fingerprint: str | None = None) -> dict[str, Any]:
        deleted = sum(1 for task_id in ids if self.history.delete_failure(task_id))
        if fingerprint:
            self.history.forget_group(fingerprint)
        return {"deleted": deleted, "asked": len(ids)}

    # -- queues, delayed set, dead letters --------------------------------------------------------
    def purge(self, queue: str) -> dict[str, Any]:
        return {"queue": queue, "purged": self.broker.purge(queue)}

    def run_eta_now(self, task_id: str) -> dict[str, Any]:
        """Move an ETA task from the delayed set to its queue now (its ``eta`` header cleared)."""
        try:
            return {"moved": task_id, "queue": self.view.run_now(task_id, self._sign)}
        except NotHere as exc:
            raise ActionError(str(exc)) from None

    def dead_requeue(self, letter_ids: list[str]) -> dict[str, Any]:
        return {"requeued": [i for i in letter_ids if self.broker.dead_letter_requeue(i)], "asked": len(letter_ids)}

    def dead_delete(self, letter_ids: list[str]) -> dict[str, Any]:
        return {"deleted": [i for i in letter_ids if self.broker.dead_letter_delete(i)], "asked": len(letter_ids)}

    # -- beat -------------------------------------------------------------------------------------
    def _beat(self) -> Any:
        if self.app is None:
            raise ActionError("beat entries are defined in the app: start the console with -A APP")
        from engine.beat import BeatControl

        return BeatControl(self.app)

    def beat_run_now(self, name: str) -> dict[str, Any]:
        return {"entry": name, "task_id": self._beat().run_now(name)}

    def beat_set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        if self.app is not None:
            control = self._beat()
            return control.enable(name) if enabled else control.disable(name)
        from engine.beat_store import BeatStore

        if self.view.store is None:
            raise ActionError("beat entries are defined in the app: start the console with -A APP")
        changed = BeatStore(self.view.store).set_enabled(name, enabled, dt.datetime.now(dt.timezone.utc))
        return {"name": name, "enabled": enabled, "changed": changed}
