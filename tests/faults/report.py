"""The one-line verdict every fault experiment prints, so runs can be compared and collected.

Each experiment sends tasks whose runs are counted per task id in a store the broker's faults do
not touch (``tests.apps.faults``); the verdict is derived from those counts, never from the
engine's own view of what happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Verdict:
    sent: int
    ran: int
    lost: int
    duplicated: int
    dead: int
    stuck: int
    recovery_s: float | None

    def line(self, experiment: str) -> str:
        return json.dumps({"experiment": experiment, **asdict(self)}, sort_keys=False)


def verdict(
    sent: Iterable[str],
    runs: Mapping[str, int],
    dead: Iterable[str] = (),
    stuck: Iterable[str] = (),
    recovery_s: float | None = None,
) -> Verdict:
    """``runs`` maps task id to how many times it started; a dead-lettered id is neither lost nor stuck."""
    sent_ids = list(sent)
    dead_ids = set(dead) & set(sent_ids)
    stuck_ids = set(stuck) & set(sent_ids)
    ran = sum(1 for tid in sent_ids if runs.get(tid, 0) > 0)
    lost = sum(1 for tid in sent_ids if runs.get(tid, 0) == 0 and tid not in dead_ids and tid not in stuck_ids)
    duplicated = sum(1 for tid in sent_ids if runs.get(tid, 0) > 1)
    return Verdict(
        sent=len(sent_ids),
        ran=ran,
        lost=lost,
        duplicated=duplicated,
        dead=len(dead_ids),
        stuck=len(stuck_ids),
        recovery_s=None if recovery_s is None else round(recovery_s, 3),
    )


def emit(experiment: str, result: Verdict) -> Verdict:
    """Print the verdict as one JSON line (pytest -s or the long-run command shows it) and return it."""
    print(result.line(experiment), flush=True)
    return result
