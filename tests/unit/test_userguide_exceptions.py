"""``from celery.exceptions import X`` becomes ``from engine.exceptions import X`` for every exception
and warning class Celery 5.7 has there, with bases of the same names, so ``except`` clauses and
``warnings.filterwarnings`` move over; the ones kept out on purpose are README's list."""

from __future__ import annotations

import celery.exceptions
import pytest

from engine import exceptions
from engine.protocol.results import decode_exception, encode_exception

# README: raising them does not stop our worker; the command-line ones belong to Celery's CLI.
LEFT_OUT = {"WorkerShutdown", "WorkerTerminate", "SystemTerminate", "ClickException", "CeleryCommandException"}
CLASSES = sorted(
    name
    for name in dir(celery.exceptions)
    if isinstance(getattr(celery.exceptions, name), type)
    and issubclass(getattr(celery.exceptions, name), BaseException)
    and name not in LEFT_OUT
)


@pytest.mark.parametrize("name", CLASSES)
def test_each_celery_exception_has_its_namesake(name: str) -> None:
    theirs, ours = getattr(celery.exceptions, name), getattr(exceptions, name)
    # Every base Celery's has (ours may add one: Retry, Ignore and Reject are TaskErrors too).
    assert {base.__name__ for base in theirs.__mro__} <= {base.__name__ for base in ours.__mro__}


def test_a_stored_new_exception_comes_back_as_itself() -> None:
    for exc in (exceptions.InvalidTaskError("bad message"), exceptions.QueueNotFound("q"), exceptions.Terminated(15)):
        again = decode_exception(encode_exception(exc))
        assert type(again) is type(exc) and again.args == exc.args
