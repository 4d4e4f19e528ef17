"""chain, group and chord with Celery's names, semantics and wire shapes (celery-wire.md §2.4).

Each is a ``Signature`` (a dict), so workflows nest and travel inside messages unchanged: a
chain publishes only its first step with the rest embedded; a chord's header tasks carry the
body and count themselves into the result backend, and the last one starts the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from engine import states
from engine.canvas import Signature
from engine.protocol.results import group_key
from engine.protocol.task import new_id
from engine.result import AsyncResult

if TYPE_CHECKING:
    from engine.app import App


def from_dict(data: dict[str, Any] | Signature, app: App | None = None) -> Signature:
    """The right canvas class for a signature dict (from the wire or user code)."""
    kind = data.get("subtask_type")
    cls = {"chain": Chain, "group": Group, "chord": Chord}.get(kind or "", Signature)
    if isinstance(data, cls):
        return data.bind_app(app) if app is not None else data
    sig = cls.__new__(cls)
    Signature.__init__(sig, dict(data), app=app or getattr(data, "app", None))
    return sig


def _app_of(sigs: Sequence[Signature], app: App | None) -> App:
    for sig in sigs:
        if getattr(sig, "app", None) is not None:
            return sig.app
    if app is None:
        raise RuntimeError("workflow has no app: build it from task signatures (task.s())")
    return app


class Chain(Signature):
    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        steps = list(tasks[0]) if len(tasks) == 1 and not isinstance(tasks[0], dict) else list(tasks)
        steps = [from_dict(s, app) for s in steps]
        super().__init__("celery.chain", (), {"tasks": steps}, options, "chain", app=_app_of(steps, app))

    @property
    def tasks(self) -> list[Signature]:
        return [from_dict(t, self.app) for t in self["kwargs"]["tasks"]]

    def __or__(self, other: Signature) -> Chain:
        return Chain(*self.tasks, *(other.tasks if isinstance(other, Chain) else [other]), app=self.app)

    def _steps(self) -> list[Signature]:
        """A group followed by another step becomes a chord, as in Celery."""
        steps: list[Signature] = []
        for step in self.tasks:
            if steps and isinstance(steps[-1], Group) and not isinstance(step, Group):
                steps[-1] = Chord(steps[-1].tasks, step, app=self.app)
            else:
                steps.append(step)
        return steps

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        steps = [s.clone() for s in self._steps()]
        for step in steps:  # ids fixed before embedding, so the caller's handles are the real ones
            _freeze(step)
        first, rest = steps[0], steps[1:]
        tail = {k: options.pop(k) for k in ("group_id", "group_index", "chord") if k in options}
        if tail and rest:
            rest[-1].options.update(tail)
        elif tail:
            options.update(tail)
        embedded = [dict(s) for s in reversed(rest)] or None
        result = first.apply_async(args, kwargs, chain=embedded, **{**self.options, **options})
        for step in rest:  # each step's handle has the previous one as its parent, as in Celery
            result = _frozen_result(step, self.app, result)
        return result


def _freeze(step: Signature) -> None:
    """Preset the ids a step will run under (task, chord body, group and its plain members)."""
    if isinstance(step, Chord):
        step.body_id()
    elif isinstance(step, Group):
        step.options.setdefault("group_id", new_id())
        for member in step["kwargs"]["tasks"]:
            if not member.get("subtask_type"):
                member["options"].setdefault("task_id", new_id())
    elif type(step) is Signature:
        step.options.setdefault("task_id", new_id())


def _frozen_result(step: Signature, app: App, parent: AsyncResult) -> AsyncResult:
    """The handle on a step sent later by a worker, from the ids ``_freeze`` preset."""
    if isinstance(step, Chord):
        return AsyncResult(step.body_id(), app, parent=parent)
    if isinstance(step, Group):
        ids = [m["options"].get("task_id") for m in step["kwargs"]["tasks"]]
        if all(ids):
            return GroupResult(step.options["group_id"], [AsyncResult(i, app) for i in ids], app=app,
                               parent=parent)
        return parent
    task_id = step.options.get("task_id")
    return AsyncResult(task_id, app, parent=parent) if task_id else parent


class Group(Signature):
    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        members = list(tasks[0]) if len(tasks) == 1 and not isinstance(tasks[0], dict) else list(tasks)
        members = [from_dict(s, app) for s in members]
        super().__init__("celery.group", (), {"tasks": members}, options, "group",
                         app=_app_of(members, app) if members else app)

    @property
    def tasks(self) -> list[Signature]:
        return [from_dict(t, self.app) for t in self["kwargs"]["tasks"]]

    def __or__(self, other: Signature) -> Signature:
        return Chord(self.tasks, other, app=self.app) if not isinstance(other, Group) else Chain(self, other)

    def __len__(self) -> int:
        return len(self["kwargs"]["tasks"])

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> GroupResult:
        options = {**self.options, **options}
        group_id = options.pop("group_id", None) or new_id()
        options.pop("group_index", None)
        results = [member.clone(args, kwargs).apply_async(group_id=group_id, group_index=i, **options)
                   for i, member in enumerate(self.tasks)]
        return GroupResult(group_id, results, app=self.app)

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)


class Chord(Signature):
    def __init__(self, header: Iterable[Any], body: Signature | None = None, app: App | None = None,
                 **options: Any) -> None:
        members = [from_dict(s, app) for s in (header.tasks if isinstance(header, Group) else header)]
        found = _app_of(members + ([body] if body is not None else []), app)
        super().__init__("celery.chord", (), {"header": members, "body": body, "kwargs": {}}, options,
                         "chord", app=found)

    @property
    def header(self) -> list[Signature]:
        return [from_dict(t, self.app) for t in self["kwargs"]["header"]]

    @property
    def body(self) -> Signature | None:
        body = self["kwargs"].get("body")
        return from_dict(body, self.app) if body is not None else None

    def body_id(self) -> str:
        body = self["kwargs"]["body"]
        body["options"].setdefault("task_id", new_id())
        return body["options"]["task_id"]

    def __call__(self, body: Signature | None = None, **options: Any) -> AsyncResult:
        if body is not None:
            return Chord(self.header, body, app=self.app).apply_async(**options)
        return self.apply_async(**options)

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body)")
        app = self.app
        group_id = options.pop("group_id", None) or new_id()
        body = self.body.clone()
        body.options.setdefault("task_id", self["kwargs"]["body"]["options"].get("task_id") or new_id())
        body.options["group_id"] = group_id
        if options.get("chain"):
            body.options["chain"] = options.pop("chain")
        header = self.header
        if not header:
            body.apply_async(([],))
            return AsyncResult(body.options["task_id"], app)
        app.chord_join().set_size(group_id, len(header))
        results = [member.clone(args, kwargs).apply_async(group_id=group_id, group_index=i,
                                                          chord=dict(body), **options)
                   for i, member in enumerate(header)]
        return AsyncResult(body.options["task_id"], app, parent=GroupResult(group_id, results, app=app))


class GroupResult(AsyncResult):
    """Results of a group (or a chord's header), read in header order."""

    def __init__(self, id: str, results: Sequence[AsyncResult], app: App | None = None,
                 parent: AsyncResult | None = None) -> None:
        super().__init__(id, app, parent=parent)
        self.results = list(results)

    def __iter__(self):  # noqa: ANN204
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    @property
    def state(self) -> str:  # type: ignore[override]
        if self.failed():
            return states.FAILURE
        return states.SUCCESS if self.ready() else states.PENDING

    def get(self, timeout: float | None = None, propagate: bool = True, **kw: Any) -> list[Any]:
        return [r.get(timeout=timeout, propagate=propagate, **kw) for r in self.results]

    join = get

    def save(self) -> GroupResult:
        backend = self._backend()
        doc = {"result": [[self.id, None], [[[r.id, None], None] for r in self.results]]}
        backend.client.setex(group_key(self.id), backend.expires or 86400, json.dumps(doc))
        return self

    @classmethod
    def restore(cls, group_id: str, app: App) -> GroupResult | None:
        data = app.backend.client.get(group_key(group_id))
        if not data:
            return None
        ids = [entry[0][0] for entry in json.loads(data)["result"][1]]
        return cls(group_id, [AsyncResult(i, app) for i in ids], app=app)


def chain(*tasks: Any, **options: Any) -> Chain:
    return Chain(*tasks, **options)


def group(*tasks: Any, **options: Any) -> Group:
    return Group(*tasks, **options)


def chord(header: Iterable[Any], body: Signature | None = None, **options: Any) -> Chord:
    return Chord(header, body, **options)


def register_builtins(app: App) -> None:
    """Celery's built-in tasks that ``map``/``starmap``/``chunks`` messages name."""

    def xmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
        sig = from_dict(task, app)
        return [sig(item) for item in it]

    def xstarmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
        sig = from_dict(task, app)
        return [sig(*item) for item in it]

    app.task(name="celery.map")(xmap)
    app.task(name="celery.starmap")(xstarmap)


class Chunks:
    """``task.chunks(it, n)``: split the work into ``celery.starmap`` tasks of ``n`` items each."""

    def __init__(self, task: Signature, it: Iterable[Any], n: int) -> None:
        self.task, self.items, self.n = task, list(it), int(n)

    def group(self) -> Group:
        parts = [self.items[i:i + self.n] for i in range(0, len(self.items), self.n)]
        return Group([Signature("celery.starmap", (), {"task": dict(self.task), "it": part}, immutable=True,
                                app=self.task.app)
                      for part in parts], app=self.task.app)

    def apply_async(self, **options: Any) -> GroupResult:
        return self.group().apply_async(**options)

    def delay(self) -> GroupResult:
        return self.apply_async()
