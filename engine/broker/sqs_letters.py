"""Dead letters on SQS: the queue ``tqctl.dead`` (``tqctl-dead`` on SQS, after the prefix).

Each letter is one JSON record: the letter's fields and the message as the worker read it
(base64). SQS cannot be read without receiving, so listing receives the whole queue, hiding what
it read for ``HIDE`` seconds, and shows it all again at the end: fine for an inbox of hundreds.
Errors are the caller's to map (``SqsBroker._guard``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from engine.broker.base import DeadLetter
from engine.serialization import json_dumps

log = logging.getLogger("engine.broker")
DEAD = "tqctl.dead"
BATCH = 10
HIDE = 30  # seconds letters stay hidden while one listing reads them
FIELDS = ("id", "queue", "reason", "detail", "time", "task_id", "task_name", "worker")
Visit = Callable[[DeadLetter, Callable[[], None]], bool]  # (letter, delete it) -> stop here


class DeadLetterQueue:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def store(self, letter: DeadLetter) -> None:
        record: dict[str, Any] = {k: getattr(letter, k) for k in FIELDS}
        record["raw"] = base64.b64encode(letter.raw).decode()
        self.client.send_message(QueueUrl=self.url, MessageBody=json_dumps(record))

    def browse(self, visit: Visit) -> None:
        """Every letter in turn until ``visit`` says stop; all but the deleted shown again after."""
        seen: dict[str, str] = {}  # message id -> receipt handle
        try:
            while True:
                reply = self.client.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=BATCH, VisibilityTimeout=HIDE, WaitTimeSeconds=0
                )
                messages = [m for m in reply.get("Messages") or [] if m["MessageId"] not in seen]
                if not messages:
                    return
                for m in messages:  # all of the batch first: a stop below must show the rest again too
                    seen[m["MessageId"]] = m["ReceiptHandle"]
                for m in messages:
                    letter = _letter(m.get("Body") or "")
                    if letter is not None and visit(letter, self._deleter(seen, m["MessageId"])):
                        return
        finally:
            for handle in seen.values():
                self._show(handle)

    def _deleter(self, seen: dict[str, str], message_id: str) -> Callable[[], None]:
        def delete() -> None:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=seen.pop(message_id))

        return delete

    def _show(self, handle: str) -> None:
        try:
            self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0)
        except ClientError as exc:  # shown again by SQS itself when HIDE runs out
            log.debug("SQS visibility change refused: %s", exc)

    def all(self, limit: int) -> list[DeadLetter]:
        found: list[DeadLetter] = []

        def visit(letter: DeadLetter, delete: Callable[[], None]) -> bool:
            found.append(letter)
            return False

        self.browse(visit)
        return sorted(found, key=lambda x: x.time, reverse=True)[: max(limit, 1)]

    def find(self, letter_id: str, act: Callable[[DeadLetter, Callable[[], None]], None]) -> DeadLetter | None:
        """The letter ``letter_id``, after ``act(letter, delete)`` on it; None when there is none."""
        found: list[DeadLetter] = []

        def visit(letter: DeadLetter, delete: Callable[[], None]) -> bool:
            if letter.id != letter_id:
                return False
            act(letter, delete)
            found.append(letter)
            return True

        self.browse(visit)
        return found[0] if found else None


def _letter(body: str) -> DeadLetter | None:
    try:
        record = json.loads(body)
        raw = base64.b64decode(record.pop("raw"))
        return DeadLetter(raw=raw, **{k: record.get(k) for k in FIELDS})
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("skipped a record in %s that is not a dead letter", DEAD)
        return None
