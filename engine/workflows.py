"""chain, group and chord with Celery's names, semantics and wire shapes (celery-wire.md §2.4).

Each is a ``Signature`` (a dict), so workflows nest and travel inside messages unchanged, and a
workflow received from either client (ours or Celery 5.7's) runs the way Celery runs it:

- a chain publishes only its first step with the rest embedded (reversed, the next step last);
  a group followed by anything in a chain becomes a chord whose body is that next step;
- a group flattens nested groups and sends each member with the group's id and index;
- a chord's header members carry the body and count themselves into the result backend; the
  last one to finish starts the body (``engine.chord_steps`` has the worker side).

``freeze`` fixes the ids every step will run under before anything is sent, so the handles a
caller gets back are the real ones.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from engine import trail
from engine.canvas import Signature, merge_options
from engine.exceptions import BrokerUnavailable
from engine.group_result import GroupResult
from engine.protocol.task import new_id
from engine.result import AsyncResult

if TYPE_CHECKING:
    from engine.app import App

__all__ = [
    "Chain",
    "Chord",
    "Chunks",
    "Group",
    "GroupResult",
    "chain",
    "chord",
    "chunks",
    "from_dict",
    "group",
    "xmap",
    "xstarmap",
]


def from_dict(data: dict[str, Any] | Signature, app: App | None = None) -> Signature:
    """The right canvas class for a signature dict (from the wire or user code).

    The new object shares ``options`` with ``data`` (a shallow copy), as a Celery signature
    built from a dict does, so freezing it fixes ids in the original too.
    """
    if not isinstance(data, dict) and hasattr(data, "s"):  # a task itself stands for task.s()
        data = data.s()
    kind = data.get("subtask_type")
    kinds: dict[str, type[Signature]] = {"chain": Chain, "group": Group, "chord": Chord}
    cls = kinds.get(kind or "", Signature)
    if isinstance(data, cls):
        return data.bind_app(app) if app is not None else data
    sig = cls.__new__(cls)
    Signature.__init__(sig, dict(data), app=app or getattr(data, "app", None))
    return sig


@contextlib.contextmanager
def _batched(app: App, members: Sequence[Signature]) -> Iterator[None]:
    """The broker's way to send a group's members together and wait once for all of them
    (RabbitMQ: one confirm wait instead of one per member), where it has one; returning still
    means the broker has every member. A failed wait is kombu's ``OperationalError`` too, as a
    failed ``send_task`` is (``engine.kombu_errors``)."""
    try:
        batched = None if not members or app.conf.task_always_eager else getattr(app.broker, "batched", None)
        with batched() if batched is not None else contextlib.nullcontext():
            yield
    except BrokerUnavailable as exc:
        from engine.kombu_errors import operational

        raise operational(exc) from None


def _app_of(sigs: Sequence[Signature], app: App | None) -> App:
    """The app a workflow belongs to: its members', else the given one, else the current app."""
    if app is not None:
        return app
    for sig in sigs:
        found = getattr(sig, "app", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
    from engine.shared import _current_app as current_app

    return current_app()


def _members(tasks: tuple[Any, ...]) -> list[Any]:
    """``chain(a, b)`` and ``chain([a, b])`` (any iterable that is not itself a signature)."""
    return list(tasks[0]) if len(tasks) == 1 and not isinstance(tasks[0], dict) else list(tasks)


def _partial(args: Sequence[Any] | None, sig: Signature) -> list[Any]:
    """Call-time args in front of the signature's own, unless it is immutable (Celery's rule)."""
    return [*args, *sig["args"]] if args and not sig.immutable else list(sig["args"])


def descend(sig: dict[str, Any], app: App | None = None) -> int:
    """How many chord parts a header member reports (Celery's ``chord._descend``)."""
    sig = from_dict(sig, app)
    if isinstance(sig, Group):
        return sum(descend(t, app) for t in sig.tasks)
    if isinstance(sig, Chain):
        return next((n for n in (descend(t, app) for t in reversed(sig.tasks)) if n > 0), 0)
    if isinstance(sig, Chord):
        body = sig.body
        return descend(body, app) if body is not None else 0
    return 1


class Chain(Signature):
    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        steps = [from_dict(s, app) for s in _members(tasks)]
        super().__init__(
            "celery.chain", (), {"tasks": steps}, options, "chain", app=_app_of(steps, app) if steps else app
        )

    @property
    def tasks(self) -> list[Signature]:
        return [from_dict(t, self.app) for t in self["kwargs"]["tasks"]]

    def __or__(self, other: Signature) -> Signature:  # type: ignore[override]  # canvas ``|``, as Celery, not dict union
        """Celery's ``chain | x``: a group after a group or chord is upgraded at once, so a chord's
        body (not the chain) runs what follows it; each side's callbacks move onto its steps."""
        return _chain_or(self, other)

    def _steps(self) -> list[Signature]:
        """The steps as they will run (nested chains flattened, groups upgraded to chords)."""
        tasks, _ = self.prepare_steps((), None, clone=True)
        return list(reversed(tasks))

    def prepare_steps(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None,
        last_task_id: str | None = None,
        group_id: str | None = None,
        chord_body: dict[str, Any] | None = None,
        group_index: int | None = None,
        root_id: str | None = None,
        link_error: Any = None,
        clone: bool = True,
    ) -> tuple[list[Signature], list[AsyncResult]]:
        """Celery's ``prepare_steps``: walk the steps last to first, freezing each.

        Returns the steps and their results, both last step first. The last step gets the
        chain's own id, group and chord (so a chain inside a group or chord reports as one part).
        """
        steps = _leading_steps(self.tasks)
        tasks: list[Signature] = []
        results: list[AsyncResult] = []
        prev_task: Signature | None = None
        prev_res: AsyncResult | None = None
        frozen = 0
        while steps:
            task = _unroll_lone(steps.pop())
            is_first, is_last = not steps, not frozen
            if isinstance(task, Group) and not len(task) and (steps or prev_task is not None):
                continue
            if clone and isinstance(task, Chord) and _led_by_task(task.body):
                steps.extend(task.unroll_body())
                continue
            if clone:
                task = task.clone(args, kwargs) if is_first else task.clone()
            elif is_first and args and not task.immutable:
                task["args"] = [*args, *task["args"]]
            if isinstance(task, Chain):
                steps.extend(task.unchain_tasks())  # its own link/link_error move onto its steps, as Celery
                continue
            if isinstance(task, Group) and prev_task is not None and prev_res is not None:
                tasks.pop()
                body_res = results.pop()
                task = Chord(task, prev_task, app=self.app, task_id=prev_res.id)
                prev_task = tasks[-1] if tasks else None
                node = results[-1] if results else None
                while node is not None and node.parent is not body_res:
                    node = node.parent
                if node is not None:
                    node.parent = None
                    prev_res = node
            if is_last:
                res = task.freeze(
                    last_task_id, root_id=root_id, group_id=group_id, chord=chord_body, group_index=group_index
                )
            else:
                res = task.freeze(root_id=root_id)
            frozen += 1
            if prev_task is not None and prev_res is not None and prev_res.parent is None:
                prev_res.parent = res
            for errback in _as_list(link_error):
                task.link_error(errback)
                if isinstance(task, Chord) and task.body is not None:
                    task.body.link_error(errback)
            tasks.append(task)
            results.append(res)
            prev_task, prev_res = task, res
            if isinstance(task, Chord):
                while res.parent is not None:
                    res = res.parent
                prev_res = res
        if clone:  # copies to send: as Celery, their nested chords' header tasks lose the body copies
            for task in tasks:
                strip_chord_header_links(task)
        return tasks, results

    def apply(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run every step here, in this process, each with the previous step's value (eager)."""
        last: Any = None
        for step in self.tasks:
            partial = (last.get(disable_sync_subtasks=False),) if last is not None else tuple(_partial(args, self))
            result = step.clone(partial, kwargs if last is None else None).apply(**{**self.options, **options})
            result.parent, last = last, result
        return last

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: dict[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        tasks, results = self.prepare_steps(
            self["args"], self["kwargs"].get("kwargs"), _id, group_id, chord, group_index, root_id, clone=False
        )
        self["kwargs"]["tasks"] = list(reversed(tasks))
        if results:
            self.options["task_id"] = results[0].id  # a chain's id is its last step's (Celery's chain.id)
        return results[0] if results else AsyncResult(_id or new_id(), self.app)

    def apply_async(  # type: ignore[override]  # an empty chain sends nothing: None, as Celery
        self, args: Sequence[Any] | None = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult | None:
        if _app_of(self.tasks, self.app).conf.task_always_eager:  # as Celery: every step here, now
            return self.apply(args or (), kwargs, **options) if self.tasks else None
        options = {**self.options, **options}
        outer = list(options.pop("chain", None) or [])
        link, link_error = options.pop("link", None), options.pop("link_error", None)
        tasks, results = self.prepare_steps(
            _partial(args, self),
            kwargs,
            options.pop("task_id", None),
            options.pop("group_id", None),
            options.pop("chord", None),
            options.pop("group_index", None),
            options.get("root_id"),
            link_error,
        )
        if not results:
            return None
        for callback in _as_list(link):
            tasks[0].link(callback)
        first = tasks.pop()
        # A list even when nothing follows, as Celery: a chord passes it on to its body, and
        # Celery's worker extends a body chain's ``chain`` option as a list (``None`` breaks it).
        sent = first.apply_async(chain=[*outer, *(dict(t) for t in tasks)], **options)
        return results[0] if tasks else sent

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult | None:
        return self.apply_async(args, kwargs)

    def unchain_tasks(self) -> list[Signature]:
        """The steps, each carrying the chain's own callbacks and errbacks (Celery's helper)."""
        tasks = [t.clone() for t in self.tasks]
        for sig in tasks:
            for errback in _as_list(self.options.get("link_error")):
                sig.link_error(errback)
        if tasks:
            for callback in _as_list(self.options.get("link")):
                tasks[-1].link(callback)
        return tasks


def _chain_or(left: Chain, other: Signature) -> Signature:
    """Celery's rules for ``chain | other``; each looks only at the chain's last step."""
    other = from_dict(other, left.app)
    if isinstance(other, Group):
        if len(other) != 1:
            if not len(other):
                return left
            tasks = left.unchain_tasks()
            if not tasks:
                return other
            if isinstance(tasks[-1], Chord) and tasks[-1].body is not None:
                tasks[-1] = _onto_body(tasks[-1], other)
                return Chain(*tasks, app=left.app)
            return Chain(*tasks, other, app=left.app)
        other = other.tasks[0]
    if isinstance(other, Chain):
        result: Signature = left
        for step in other.unchain_tasks():
            result = result | step
        return result
    last = left.tasks[-1] if left.tasks else None
    if isinstance(last, Group) or (isinstance(last, Chord) and last.body is not None and not isinstance(other, Chord)):
        sig = left.clone()
        tasks = sig.tasks  # type: ignore[attr-defined]
        if isinstance(last, Group):  # group | task is a chord; two chords in a row merge into one
            tasks[-1] = Chord(tasks[-1], other, app=left.app)
            if len(tasks) > 1 and isinstance(tasks[-2], Chord) and tasks[-2].body is not None:
                tasks[-2:] = [_onto_body(tasks[-2], tasks[-1])]
        else:
            tasks[-1] = _onto_body(tasks[-1], other)
        sig["kwargs"]["tasks"] = tasks
        return sig
    return Chain(*left.unchain_tasks(), other, app=left.app)


def _onto_body(task: Chord, other: Signature) -> Chord:
    """``task`` with ``other`` chained after its body (a copy: ``task`` is left as it was)."""
    sig = task.clone()
    assert isinstance(sig, Chord)
    sig["kwargs"]["body"] = sig.body | other  # type: ignore[operator]
    return sig


class _FoldedChain(Chain):
    """``chain(a, b, c)`` built as ``a | b | c``, as Celery's ``chain`` does (so a chord followed by
    a task takes it into its body): the result may be a chord or group. ``chain(..., app=x)`` and
    ``Chain(...)`` keep the steps as given."""

    def __new__(cls, *tasks: Any, **options: Any) -> Any:
        if options or not tasks or (len(tasks) == 1 and isinstance(tasks[0], dict)):
            return super().__new__(cls)
        result: Signature = Chain()
        for task in _members(tasks):
            result = result | from_dict(task)
        return result

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        if not self:  # built by __new__ when not folded
            super().__init__(*tasks, app=app, **options)


# Options a chain applies itself when it runs; the rest pass to its first step (Celery's list).
_CHAIN_RUN_OPTIONS = frozenset(
    {"chord", "group_id", "group_index", "link", "link_error", "parent_id", "root_id", "task_id"}
)


def _leading_steps(steps: list[Signature]) -> deque[Signature]:
    """Leading nested chains opened up and leading empty groups dropped, so call-time args reach
    the first real step (Celery's head loop in ``prepare_steps``)."""
    queue: deque[Signature] = deque(steps)
    stripped = None
    while queue:
        head = queue[0]
        if isinstance(head, Chain):
            queue.popleft()
            queue.extendleft(reversed(head.unchain_tasks()))
            continue
        head = queue[0] = _unroll_lone(head)
        if isinstance(head, Group) and not len(head) and len(queue) > 1:
            stripped = queue.popleft()
            continue
        break
    if stripped is not None and not queue:
        queue.append(stripped)
    return queue


def _unroll_lone(task: Signature) -> Signature:
    """A group of one task is that task in a chain (Celery's ``maybe_unroll_group``, #1656)."""
    if isinstance(task, Group) and len(task) == 1:
        return task.tasks[0]
    return task


def _led_by_task(body: Signature | None) -> bool:
    """A chain body whose first step is a plain task: a chord can carry only that first step."""
    if not isinstance(body, Chain):
        return False
    steps = body.tasks
    return bool(steps) and type(steps[0]) is Signature


def _clear_chord_option(sig: Signature) -> None:
    """Drop the ``chord`` option from the tasks of ``sig`` that would report to a chord."""
    sig.options.pop("chord", None)
    if isinstance(sig, Group):
        _set_members(sig, "tasks", sig.tasks, _clear_chord_option)
    elif isinstance(sig, Chain) and sig.tasks:
        _clear_chord_option(_last_step(sig))
    elif isinstance(sig, Chord) and sig.body is not None:
        _clear_chord_option(_stored(sig, "body"))


def strip_chord_header_links(sig: Signature) -> None:
    """In a copy about to be sent, drop the body that freezing put on every header task of the
    chords nested in ``sig`` (Celery 5.7's ``_strip_chord_header_links``): each chord carries its
    body once, in its kwargs, and puts it back on its header tasks when it runs. Kept, every level
    of chords nested in chord bodies (``chain(group, group, ..., task)``) multiplies the message by
    its header's width: a chain of ten 25-wide groups made megabytes, and seconds of CPU per level
    on the worker that starts the next one. Changes are made in place (``_stored``, ``_set_members``)."""
    if isinstance(sig, Chord):
        header = _stored(sig, "header")
        _clear_chord_option(header)
        strip_chord_header_links(header)
        if sig["kwargs"].get("body") is not None:
            strip_chord_header_links(_stored(sig, "body"))
    elif isinstance(sig, (Group, Chain)):
        _set_members(sig, "tasks", sig.tasks, strip_chord_header_links)


def _stored(sig: Signature, key: str) -> Signature:
    """``sig["kwargs"][key]`` as a canvas object kept in place, so changes to it stay in ``sig``."""
    value = sig["kwargs"][key]
    if isinstance(value, list):  # a chord's header as a plain list of members
        value = sig._header_group() if isinstance(sig, Chord) else Group(value, app=sig.app)
    found = from_dict(value, sig.app)
    sig["kwargs"][key] = found
    return found


def _last_step(sig: Signature) -> Signature:
    steps = sig.tasks  # type: ignore[attr-defined]
    sig["kwargs"]["tasks"] = steps
    return steps[-1]  # type: ignore[no-any-return]


def _set_members(sig: Signature, key: str, members: list[Signature], visit: Any) -> None:
    """Visit each member and keep the canvas objects in ``sig`` (``tasks`` builds new wrappers)."""
    sig["kwargs"][key] = members
    for member in members:
        visit(member)


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Group(Signature):
    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        members = [from_dict(s, app) for s in _members(tasks)]
        super().__init__(
            "celery.group", (), {"tasks": members}, options, "group", app=_app_of(members, app) if members else app
        )

    @property
    def tasks(self) -> list[Signature]:
        return [from_dict(t, self.app) for t in self["kwargs"]["tasks"]]

    def __or__(self, other: Signature) -> Signature:  # type: ignore[override]  # canvas ``|``, not dict union
        """``group | x`` is a chord with body ``x`` (an empty group adds nothing), as Celery."""
        if isinstance(other, Group) and not len(other):
            return self
        return Chord(self, other, app=self.app)

    def __len__(self) -> int:
        return len(self["kwargs"]["tasks"])

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """As Celery: on the first member only, made immutable (it cannot get its siblings' values)."""
        return self.tasks[0].link(from_dict(callback, self.app).clone().set(immutable=True))

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """As Celery: on every member, since any of them may fail."""
        sig = from_dict(errback, self.app)
        for member in self.tasks:
            member.link_error(sig.clone())
        return sig

    def _unrolled(self) -> Iterator[Signature]:
        """The members with nested groups flattened into this one and empty chains left out."""
        stack = deque(self.tasks)
        while stack:
            task = stack.popleft()
            if isinstance(task, Group):
                stack.extendleft(reversed(task.tasks))
            elif isinstance(task, Chain) and not task.tasks:
                continue
            else:
                yield task

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: dict[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        opts = self.options
        gid = opts.setdefault("task_id", new_id())
        if group_id:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        root_id = opts.setdefault("root_id", root_id)
        parent_id = opts.setdefault("parent_id", parent_id)
        members = [t.clone() for t in self._unrolled()]
        results = [
            m.freeze(group_id=group_id, chord=chord, root_id=root_id, parent_id=parent_id, group_index=i)
            for i, m in enumerate(members)
        ]
        self["kwargs"]["tasks"] = members
        return GroupResult(gid, results, app=self.app)

    def apply_async(
        self, args: Sequence[Any] | None = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        if options.get("link"):
            raise TypeError("Cannot add link to group: use a chord")
        if options.get("link_error"):
            raise TypeError("Cannot add link to group: do that on individual tasks")
        if _app_of(self.tasks, self.app).conf.task_always_eager:  # as Celery: every member here, now
            return self.apply(args or (), kwargs, **options)  # type: ignore[no-any-return]
        options = merge_options(self.options, options, keep_stamps=False)  # Celery's ``_freeze_gid``
        group_id = options.pop("task_id", None) or new_id()
        options["group_id"] = group_id
        chord = options.pop("chord", None)
        options.pop("group_index", None)
        partial = _partial(args, self)
        root_id = options.get("root_id")
        members = [t.clone() for t in self._unrolled()]
        results = [m.freeze(group_id=group_id, root_id=root_id, group_index=i) for i, m in enumerate(members)]
        size = 0
        with _batched(_app_of(members, self.app), members), trail.quiet():
            for index, member in enumerate(members):
                body = chord if chord is not None else member.options.get("chord")
                size += descend(member, self.app)
                if body is not None and index == len(members) - 1:
                    _app_of(members, self.app).chord_join().set_size(group_id, size)
                # As Celery's ``_IMMUTABLE_OPTIONS``: a member frozen into an outer group (a chord's
                # header) keeps that group's id, so it counts into the chord it belongs to.
                own = {k: v for k, v in options.items() if k != "group_id" or "group_id" not in member.options}
                member.apply_async(partial, kwargs, **({"chord": body} if body is not None else {}), **own)
        result = GroupResult(group_id, results, app=self.app)
        if len(results) == 1 and isinstance(results[0], GroupResult):
            result = results[0]
        if options.get("add_to_parent", True):
            trail.add(_app_of(members, self.app), result)
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> GroupResult:
        """``delay`` for coroutines: the members are sent from a thread, so the loop never waits on
        the broker; returns once the broker has every member."""
        import asyncio  # only awaited canvases need it; a worker that runs none never loads it

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.apply_async, args, kwargs))


class Chord(Signature):
    def __init__(
        self, header: Iterable[Any], body: Signature | None = None, app: App | None = None, **options: Any
    ) -> None:
        lazy = header if isinstance(header, GeneratorType) else None  # sent as it yields (engine.chord_lazy)
        if lazy is not None:
            header = []
        if isinstance(header, dict) and not isinstance(header, Signature):
            header = from_dict(header, app)
        if isinstance(header, (Group, Chain)):  # a chain as a header gives its steps (Celery's _maybe_group)
            header = header.tasks
        elif isinstance(header, Signature):
            header = [header]
        members = [from_dict(s, app) for s in header]
        found = _app_of(members + ([body] if body is not None else []), app)
        if body is not None:
            body = from_dict(body, found)
        super().__init__(
            "celery.chord", (), {"header": members, "body": body, "kwargs": {}}, options, "chord", app=found
        )
        self._lazy_header = lazy

    def _settle_header(self) -> None:
        """A generator header read to the end, for every use but sending the chord itself."""
        lazy = getattr(self, "_lazy_header", None)
        if lazy is not None:
            self._lazy_header = None
            self["kwargs"]["header"] = [from_dict(s, self.app) for s in lazy]

    def clone(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        self._settle_header()
        return super().clone(args, kwargs, **options)

    def _header_group(self) -> Group:
        """The header as a group: Celery 5.7 sends a frozen chord's header as a group signature."""
        self._settle_header()
        header = self["kwargs"]["header"]
        if isinstance(header, dict):
            return from_dict(header, self.app)  # type: ignore[return-value]
        group = Group.__new__(Group)
        Signature.__init__(
            group,
            {
                "task": "celery.group",
                "args": [],
                "kwargs": {"tasks": list(header)},
                "options": {},
                "subtask_type": "group",
                "immutable": False,
            },
            app=self.app,
        )
        return group

    @property
    def header(self) -> list[Signature]:
        return self._header_group().tasks

    @property
    def tasks(self) -> list[Signature]:
        return self.header

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
            return Chord(self.header, body, app=self.app, **self.options).apply_async(**options)
        return self.apply_async(**options)

    def __or__(self, other: Signature) -> Signature:  # type: ignore[override]  # canvas ``|``, not dict union
        """``chord | task`` (or a group of one) goes onto the body, as Celery: after a group body
        it runs once, as that body's own chord, not once per member."""
        if isinstance(other, Group) and len(other) == 1:
            other = other.tasks[0]
        if isinstance(other, (Group, Chain)) or self["kwargs"].get("body") is None:
            return Signature.__or__(self, other)
        return _onto_body(self, other)

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """A chord's callback runs after its body (Celery links it to the body)."""
        body = self["kwargs"]["body"]
        return from_dict(body, self.app).link(callback)

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """As Celery: on the body; on every header member only with
        ``task_allow_error_cb_on_chord_header``; a chord in the header links it itself."""
        errback = from_dict(errback, self.app)
        app = self._bound_app()
        on_header = bool(app.conf.get("task_allow_error_cb_on_chord_header"))
        lazy = getattr(self, "_lazy_header", None) is not None and not on_header  # keep a generator unread
        for task in [] if lazy else self.header:
            if on_header:  # ``immutable`` lands in the copy's options, exactly as Celery's clone puts it
                task.link_error(errback.clone(immutable=True))
            if isinstance(task, Chord):
                task.link_error(errback)
        body = self["kwargs"].get("body")
        if body is not None:
            return from_dict(body, self.app).link_error(errback)
        return super().link_error(errback)

    def unroll_body(self) -> list[Signature]:
        """``chord(h, chain(a, b, c))`` → ``chord(h, a), b, c``: each header member carries only ``a``."""
        task = self.clone()
        assert isinstance(task, Chord)
        body = task.body
        assert isinstance(body, Chain)
        steps = body.unchain_tasks()
        first = steps[0].clone(**{k: v for k, v in body.options.items() if k not in _CHAIN_RUN_OPTIONS})
        task["kwargs"]["body"] = first
        return [task, *steps[1:]]

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: dict[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        header = self._header_group()
        body = self.body
        header_result = header.freeze(parent_id=parent_id, root_id=root_id, chord=body)
        self["kwargs"]["header"] = header
        if body is None:
            return header_result
        body_result = body.freeze(_id, root_id=root_id, chord=chord, group_id=group_id, group_index=group_index)
        self["kwargs"]["body"] = body
        node, seen = body_result, set()
        while node is not None and node.id not in seen:
            seen.add(node.id)
            if node.parent is None:
                node.parent = header_result
                break
            node = node.parent
        return body_result

    def apply_async(
        self,
        args: Sequence[Any] | None = (),
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        body = self.body
        if body is None:
            raise ValueError("a chord needs a body: chord(header)(body)")
        if self._bound_app().conf.task_always_eager:  # as Celery: header, then body, here and now
            return self.apply(args or (), kwargs, **({"task_id": task_id} if task_id else {}), **options)  # type: ignore[no-any-return]
        header_delay = {k: options.pop(k) for k in ("countdown", "eta") if options.get(k) is not None}
        merged = {**self.options, **options}
        for key in ("countdown", "eta"):
            merged.pop(key, None)
        task_id = task_id or merged.pop("task_id", None)
        merged.pop("task_id", None)
        lazy = getattr(self, "_lazy_header", None)
        if lazy is not None:
            from engine import chord_lazy

            self._lazy_header = None
            return chord_lazy.run(
                self._bound_app(), lazy, body.clone(), _partial(args, self), kwargs, task_id, header_delay, merged
            )
        header = self._header_group().clone()
        assert isinstance(header, Group)
        return self._run(header, body.clone(), _partial(args, self), kwargs, task_id, header_delay, merged)

    def _run(
        self,
        header: Group,
        body: Signature,
        partial: list[Any],
        kwargs: dict[str, Any] | None,
        task_id: str | None,
        header_delay: dict[str, Any],
        options: dict[str, Any],
    ) -> AsyncResult:
        """Celery's ``chord.run``: the body takes the chord's options (its chain, its outer group)."""
        group_id = header.options.get("task_id") or new_id()
        root_id = body.options.get("root_id")
        for callback in _as_list(options.pop("link", None)):
            body.link(callback)
        for errback in _as_list(options.pop("link_error", None)):
            if isinstance(body, Group) and not body.options.get("link_error"):
                body.link_error(errback)  # onto each member, which keep their own errbacks
            else:  # a group's own errbacks replace its members'; any other body keeps it in its own
                Signature.link_error(body, errback)  # options, where the chord's error handling reads it (Celery)
        body.options.update({k: v for k, v in options.items() if k != "parent_id"})
        body_result = body.freeze(task_id or new_id(), group_id=group_id, root_id=root_id)
        strip_chord_header_links(body)  # the header freeze below puts this chord's own body back
        for key in ("chain", "chord", "task_id", "group_index"):
            options.pop(key, None)
        header.options["task_id"] = group_id
        frozen = header.freeze(group_id=group_id, chord=body, root_id=root_id)  # drops empty chains
        if len(header):
            if any(isinstance(r, GroupResult) for r in frozen.results):
                frozen.save()  # Celery's apply_chord: the body then gets the header's nested shape
            header_result = header.apply_async(partial, kwargs, task_id=group_id, **options, **header_delay)
        else:
            body.apply_async(([],))
            header_result = GroupResult(group_id, [], app=self.app)
        body_result.parent = header_result
        return body_result


# Celery's lowercase names: ``chain(a, b)`` folds with ``|`` as Celery's does; ``group``, ``chord`` are the classes.
chain = _FoldedChain
group = Group
chord = Chord


def chunks(task: Signature, it: Iterable[Any], n: int) -> Chunks:
    """Celery's ``chunks(add.s(), items, 10)``: ``task.chunks(items, 10)`` as a function."""
    return Chunks(task, it, n)


def xmap(task: Signature, it: Iterable[Any]) -> Signature:
    """Celery's ``xmap(add.s(), items)``: one ``celery.map`` task calling ``task`` on each item."""
    return Signature("celery.map", (), {"task": dict(task), "it": list(it)}, immutable=True, app=task.app)


def xstarmap(task: Signature, it: Iterable[Any]) -> Signature:
    """Celery's ``xstarmap(add.s(), pairs)``: each item's members are the arguments."""
    return Signature("celery.starmap", (), {"task": dict(task), "it": list(it)}, immutable=True, app=task.app)


def replacement(task: Any, data: dict[str, Any]) -> Signature:
    """The signature that takes over from ``task`` in ``Task.replace``, as Celery builds it.

    It runs under the replaced task's id (the last step of a chain, a chord's body), takes its
    group, chord, callbacks and errbacks, and is followed by the rest of the task's chain. A
    group becomes a chord with ``celery.accumulate`` so the replaced task still has one result.
    """
    from engine.exceptions import ImproperlyConfigured

    request, app = task.request, task.app
    sig = from_dict(data, app)
    if "chord" in sig.options:
        raise ImproperlyConfigured("A signature replacing a task must not be part of a chord")
    if isinstance(sig, Chain) and not sig.tasks:
        raise ImproperlyConfigured("Cannot replace with an empty chain")
    accumulate = app.tasks["celery.accumulate"].s(index=0)
    if isinstance(sig, Group):
        sig = sig | accumulate
    if isinstance(sig, Chain) and isinstance(sig.tasks[-1], Group):
        steps = sig.tasks
        steps[-1] = steps[-1] | accumulate
        sig = Chain(*steps, app=app, **sig.options)
    for callback in _as_list(request.callbacks):
        sig.link(callback)
    for errback in _as_list(request.errbacks):
        sig.link_error(errback)
    sig.freeze(request.id)
    # A top-level message header (not among ``request.headers``, the custom ones): read it from the request.
    nesting = int(getattr(request, "replaced_task_nesting", 0) or 0) + 1
    sig.set(
        chord=request.chord,
        group_id=request.group,
        group_index=request.group_index,
        root_id=request.root_id,
        replaced_task_nesting=nesting,
    )
    if isinstance(sig, Chain):
        for step in sig.tasks:
            step.set(replaced_task_nesting=nesting)
    for step in reversed(request.chain or []):
        sig = sig | from_dict(step, app).set(replaced_task_nesting=nesting)
    return sig


def register_builtins(app: App) -> None:
    """Kept here for ``engine.app``; the built-ins live in ``engine.builtins``."""
    from engine.builtins import register_builtins as register

    register(app)


class Chunks:
    """``task.chunks(it, n)``: split the work into ``celery.starmap`` tasks of ``n`` items each."""

    def __init__(self, task: Signature, it: Iterable[Any], n: int) -> None:
        self.task, self.items, self.n = task, list(it), int(n)

    def group(self) -> Group:
        parts = [self.items[i : i + self.n] for i in range(0, len(self.items), self.n)]
        return Group(
            [
                Signature(
                    "celery.starmap", (), {"task": dict(self.task), "it": part}, immutable=True, app=self.task.app
                )
                for part in parts
            ],
            app=self.task.app,
        )

    def apply_async(self, **options: Any) -> GroupResult:
        return self.group().apply_async(**options)

    def delay(self) -> GroupResult:
        return self.apply_async()
