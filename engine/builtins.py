"""Celery's built-in tasks, under Celery's names, registered on every app.

Messages from Celery clients name them (``celery.chord`` for a chord sent as a task,
``celery.chord_unlock`` from backends without a native join, ``celery.map`` for ``task.map``), and
``Task.replace`` with a group appends ``celery.accumulate``; tools list them in ``registered``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.canvas import maybe_signature

if TYPE_CHECKING:
    from engine.app import App
    from engine.task import Task


def register_builtins(app: App) -> None:
    from engine.group_result import GroupResult, result_from_tuple
    from engine.workflows import Chord, Chunks, Group, from_dict

    def xmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
        sig = from_dict(task, app)
        return [sig(item) for item in it]

    def xstarmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
        sig = from_dict(task, app)
        return [sig(*item) for item in it]

    def chunks(task: dict[str, Any], it: list[Any], n: int) -> Any:
        return Chunks(from_dict(task, app), it, n).apply_async()

    def accumulate(*args: Any, **kwargs: Any) -> Any:
        index = kwargs.get("index")
        return args[index] if index is not None else args

    def chain(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("chain is not a real task")

    def group(
        tasks: list[dict[str, Any]], result: Any, group_id: str, partial_args: Any = (), add_to_parent: bool = True
    ) -> Any:
        restored = result_from_tuple(result, app)
        for task in tasks:
            maybe_signature(task, app).apply_async(group_id=group_id)  # type: ignore[union-attr]
        return restored.as_tuple()

    def chord(
        header: Any,
        body: dict[str, Any],
        partial_args: Any = (),
        interval: Any = None,
        countdown: Any = 1,
        max_retries: Any = None,
        eager: bool = False,
        **kwargs: Any,
    ) -> Any:
        members = header["kwargs"]["tasks"] if isinstance(header, dict) else header
        result = Chord(Group(members, app=app), from_dict(body, app), app=app).apply_async(partial_args, **kwargs)
        return result.id

    def chord_unlock(
        self: Task,
        group_id: str,
        callback: dict[str, Any],
        interval: float | None = None,
        max_retries: int | None = None,
        result: Any = None,
        **kwargs: Any,
    ) -> None:
        if result is None:
            deps = GroupResult.restore(group_id, app=app)
        else:
            deps = GroupResult(group_id, [result_from_tuple(r, app) for r in result], app=app)
        if deps is None or not deps.ready():
            raise self.retry(countdown=interval or 1, max_retries=max_retries)
        from engine.chord_steps import fail_body

        body = maybe_signature(callback, app)
        try:
            values = deps.get(propagate=True, disable_sync_subtasks=False)  # all ready: no wait
        except Exception as exc:  # noqa: BLE001 - any header failure fails the body
            from engine.exceptions import ChordError

            fail_body(app, body, ChordError(f"Dependency raised {exc!r}"))  # type: ignore[arg-type]
            return
        body.delay(values)  # type: ignore[union-attr]

    def backend_cleanup() -> None:
        """Redis expires results by itself; nothing to sweep."""

    for name, fun, bind in (
        ("celery.map", xmap, False),
        ("celery.starmap", xstarmap, False),
        ("celery.chunks", chunks, False),
        ("celery.accumulate", accumulate, False),
        ("celery.chain", chain, False),
        ("celery.group", group, False),
        ("celery.chord", chord, False),
        ("celery.chord_unlock", chord_unlock, True),
        ("celery.backend_cleanup", backend_cleanup, False),
    ):
        app.task(name=name, bind=bind)(fun)
