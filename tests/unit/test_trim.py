"""An idle process gives its freed heap back once per idle period, never while it is busy."""

from __future__ import annotations

import multiprocessing
import os
import select
import threading

from engine.worker.child import ChildEnds, _wait_for_order
from engine.worker.trim import IdleTrim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_process_never_trims_and_an_idle_one_trims_once() -> None:
    calls: list[int] = []
    clock = Clock()
    trim = IdleTrim(trim=lambda pad: calls.append(pad) or 1, after=1.0, clock=clock)
    for finished in range(1, 30):  # a task finished at every tick, 0.5 s apart, from the start
        clock.now += 0.5
        assert not trim.tick(finished)
    for _ in range(10):  # then ten idle seconds
        clock.now += 1.0
        trim.tick(29)
    assert calls == [0]
    clock.now += 0.5
    trim.tick(30)  # work again, then idle again: one more
    clock.now += 1.5
    assert trim.tick(30)
    assert calls == [0, 0]


def test_start_up_is_trimmed_once_after_the_first_idle_second() -> None:
    """Start-up frees heap too (a pool child builds its worker after the fork): an idle worker is
    trimmed once, then not again until tasks have run."""
    calls: list[int] = []
    clock = Clock()
    trim = IdleTrim(trim=lambda pad: calls.append(pad) or 1, after=1.0, clock=clock)
    clock.now += 0.5
    assert not trim.tick(0)
    for _ in range(5):
        clock.now += 1.0
        trim.tick(0)
    assert calls == [0]


def test_without_malloc_trim_it_only_counts() -> None:
    clock = Clock()
    trim = IdleTrim(trim=None, after=1.0, clock=clock)
    trim.tick(1)
    clock.now += 5
    assert not trim.tick(1)


def test_a_waiting_pool_child_trims_once_then_takes_its_order() -> None:
    """The parent-fed child's wait: after ``idle`` seconds with no order it trims, once, then
    keeps waiting; the order that comes afterwards is returned."""
    inq_r, inq_w = os.pipe()
    os.set_blocking(inq_r, False)
    inbox_r, inbox_w = multiprocessing.Pipe(duplex=False)
    ends = ChildEnds(inq_r, inbox_r, inbox_w, None, 0.005)  # type: ignore[arg-type]  # shared: unused here
    ready = select.poll()
    ready.register(inq_r, select.POLLIN)
    ready.register(inbox_r.fileno(), select.POLLIN)
    trimmed = threading.Event()
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        trimmed.set()
        return 1

    def send_after_trim() -> None:
        assert trimmed.wait(10)
        inbox_w.send_bytes(b"order")

    sender = threading.Thread(target=send_after_trim)
    sender.start()
    try:
        assert _wait_for_order(ends, ready, trim=trim, idle=0.05) == b"order"
    finally:
        sender.join(10)
        for fd in (inq_r, inq_w):
            os.close(fd)
        inbox_r.close()
        inbox_w.close()
    assert calls == [0]
