"""Signatures: a task call as plain data (Celery's signature dict), sendable later.

``Signature`` subclasses ``dict`` so it always serializes as Celery's shape (celery-wire.md
§2.3) and one received from the wire works without conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App
    from engine.result import AsyncResult


class Signature(dict):
    def __init__(
        self,
        task: str | dict[str, Any],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: App | None = None,
        **ex: Any,
    ) -> None:
        if isinstance(task, dict):
            super().__init__(task)
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
        else:
            super().__init__(
                task=task,
                args=tuple(args),  # a tuple, as Celery's (``sig.args == (1, 2)``); JSON sends a list
                kwargs=dict(kwargs or {}),
                options={**(options or {}), **ex},
                subtask_type=subtask_type,
                immutable=immutable,
            )
        self.app = app

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: App | None = None) -> Signature:
        """The right canvas class for a signature dict (Celery's ``Signature.from_dict``)."""
        from engine.workflows import from_dict

        return from_dict(data, app)

    @property
    def name(self) -> str:
        return self["task"]

    @property
    def task(self) -> str:
        """The task's name (Celery's ``sig.task``, the same as ``sig.name``)."""
        return self["task"]

    @task.setter
    def task(self, value: str) -> None:
        self["task"] = value

    @property
    def subtask_type(self) -> str | None:
        """``"chain"``, ``"group"``, ``"chord"``, ... for a canvas; None for a task."""
        return self.get("subtask_type")

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = value

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    @property
    def parent_id(self) -> str | None:
        return self["options"].get("parent_id")

    @property
    def root_id(self) -> str | None:
        return self["options"].get("root_id")

    @property
    def type(self) -> Any:
        """The registered task this signature calls (``KeyError`` if the app has none by that name)."""
        return self._bound_app().tasks[self["task"]]

    def replace(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, options: Any = None
    ) -> Signature:
        """A copy with the given parts (each one left as it is when None) put in place of this one's."""
        sig = self.clone()
        if args is not None:
            sig["args"] = tuple(args)
        if kwargs is not None:
            sig["kwargs"] = dict(kwargs)
        if options is not None:
            sig["options"] = dict(options)
        return sig

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]

    @property
    def id(self) -> str | None:
        return self["options"].get("task_id")

    @property
    def args(self) -> Sequence[Any]:
        return self["args"]  # type: ignore[no-any-return]

    @args.setter
    def args(self, value: Sequence[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self["kwargs"] = dict(value)

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self["immutable"] = immutable
        self["options"].update(options)
        return self

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: dict[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        """Fix the ids this signature will run under, as Celery's ``freeze`` (an existing id wins)."""
        from engine.protocol.task import new_id
        from engine.result import AsyncResult

        opts = self["options"]
        task_id = opts.setdefault("task_id", _id or new_id())
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        return AsyncResult(task_id, self.app)

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """Run ``callback`` with this task's result when it succeeds (Celery's ``link``)."""
        return self._append_option("link", callback)

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """Run ``errback`` when this task fails (Celery's ``link_error``)."""
        return self._append_option("link_error", errback)

    def on_error(self, errback: dict[str, Any]) -> Signature:
        self.link_error(errback)
        return self

    def _append_option(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        items = self["options"].setdefault(key, [])
        if not isinstance(items, list):
            items = self["options"][key] = list(items) if isinstance(items, tuple) else [items]
        if value not in items:
            items.append(value)
        return value

    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> Signature:
        """Celery's stamping API: add stamps (and a ``StampingVisitor``'s) to this canvas and its links."""
        from engine.stamping import stamp

        stamp(self, visitor, append_stamps, app=self.app, **headers)
        return self

    def clone(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with call-time args, kwargs and options merged in, by Celery's ``_merge`` rules:
        an immutable signature takes no args nor kwargs, and the options it is bound to (its
        group, its stamps) stay (see ``merge_options``)."""
        sig = type(self).__new__(type(self))  # keep the canvas class (chain, group, chord)
        Signature.__init__(sig, _plain(dict(self)), app=self.app)
        sig["args"] = (*args, *sig["args"]) if args and not sig.immutable else tuple(sig["args"])
        if kwargs and not sig.immutable:
            sig["kwargs"] = {**sig["kwargs"], **kwargs}
        sig["options"] = merge_options(sig["options"], _plain(options))  # copied: a clone shares nothing
        return sig

    partial = clone  # Celery's other name for it

    def _merged(self, args: Sequence[Any], kwargs: dict[str, Any] | None, options: dict[str, Any]) -> Signature:
        """The copy ``apply``/``apply_async`` run: merged as ``clone`` does, less the options given as
        ``None`` (Celery dismisses them), and without copying the given ones (they are sent at once)."""
        sig = self.clone(args, kwargs)
        sig["options"] = merge_options(sig["options"], {k: v for k, v in options.items() if v is not None})
        return sig

    def bind_app(self, app: App) -> Signature:
        self.app = self.app or app
        return self

    def _bound_app(self) -> App:
        """This signature's app, else the current one (Celery's signatures fall back the same way)."""
        if self.app is None:
            from engine.shared import _current_app as current_app

            self.app = current_app()
        return self.app

    def apply(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run here, in this process (eager), like ``task.apply``."""
        if self.get("subtask_type") in ("group", "chord"):
            from engine.eager import apply_canvas

            return apply_canvas(self, args, kwargs, options)
        sig = self._merged(args, kwargs, options)
        return self._bound_app().tasks[sig.name].apply(sig["args"], sig["kwargs"], **sig["options"])

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        app = self._bound_app()
        sig = self._merged(args, kwargs, options)
        opts = dict(sig["options"])
        nesting = opts.pop("replaced_task_nesting", None)
        if nesting:
            opts["headers"] = {**(opts.get("headers") or {}), "replaced_task_nesting": nesting}
        task = app.tasks.get(sig.name)
        if task is not None:  # as Celery: through the task's own apply_async (its defaults, typing check)
            return task.apply_async(sig["args"], sig["kwargs"], **opts)  # type: ignore[no-any-return]
        return app.send_task(sig.name, sig["args"], sig["kwargs"], **opts)

    def __or__(self, other: Signature) -> Signature:  # type: ignore[override]
        """``task | x``: a chain; a chain's steps are taken in, a group of one is its task (Celery)."""
        from engine.workflows import Chain, Group

        if isinstance(other, Chain):
            return Chain(self, *other.unchain_tasks(), app=self.app)
        if isinstance(other, Group) and len(other) == 1:
            other = other.tasks[0]
        return Chain(self, other, app=self.app)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.app is None:
            raise RuntimeError(f"signature {self.name} is not bound to an app")
        sig = self.clone(args, kwargs)
        return self.app.tasks[sig.name](*sig["args"], **sig["kwargs"])

    def __repr__(self) -> str:
        args = ", ".join([*map(repr, self["args"]), *(f"{k}={v!r}" for k, v in self["kwargs"].items())])
        return f"{self.name}({args}){'!' if self.immutable else ''}"


# Options a call cannot replace once the signature has them (Celery's ``_IMMUTABLE_OPTIONS``):
# a task frozen into a group must still count into that group, and a stamp is the sender's
# label, not the caller's to rewrite. The stamps a signature lists are kept too.
KEPT_OPTIONS = frozenset({"group_id", "stamped_headers"})


def merge_options(own: dict[str, Any], given: dict[str, Any], *, keep_stamps: bool = True) -> dict[str, Any]:
    """``own`` with ``given`` on top, except ``KEPT_OPTIONS`` (and, with ``keep_stamps``, the
    stamps ``own`` lists in ``stamped_headers``) where ``own`` has them: Celery's ``_merge``.

    A Celery group keeps only ``KEPT_OPTIONS`` of its own (``keep_stamps=False``); its members
    keep their stamps when it sends them."""
    kept: set[str] = set(KEPT_OPTIONS)
    if keep_stamps:
        names = own.get("stamped_headers") or []
        kept.update([names] if isinstance(names, str) else names)
    return {**own, **{k: v for k, v in given.items() if k not in kept or k not in own}}


def signature(varies: str | dict[str, Any], *args: Any, app: App | None = None, **kwargs: Any) -> Signature:
    """A signature by task name, without importing the task (Celery's ``signature()``)."""
    if isinstance(varies, Signature):
        return varies
    if isinstance(varies, dict):
        return maybe_signature(varies, app)  # type: ignore[return-value]
    return Signature(varies, *args, app=app, **kwargs)  # type: ignore[misc]


def maybe_signature(value: Any, app: App | None = None) -> Signature | None:
    """A signature (of the right canvas class) from a dict off the wire, or ``None``."""
    if value is None:
        return None
    from engine.workflows import from_dict

    return from_dict(value, app)


def _plain(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """A deep copy as wire data: nested signatures become plain dicts (never copying an App).

    A part reached twice is copied once and shared in the copy, as ``copy.deepcopy`` (Celery's
    clone) does: a frozen chord puts its body on every header task, and copying each of those
    separately made cloning chords nested in chord bodies exponential in the depth.
    """
    if not isinstance(value, (dict, list, tuple)):
        return value
    memo = {} if memo is None else memo
    found = memo.get(id(value))
    if found is not None:
        return found[1]
    if isinstance(value, dict):
        copied: Any = {}
        memo[id(value)] = (value, copied)  # the original is kept alive, so its id is not reused
        copied.update((k, _plain(v, memo)) for k, v in value.items())
    else:
        copied = []
        memo[id(value)] = (value, copied)
        copied.extend(_plain(v, memo) for v in value)
    return copied


# ``celery.canvas`` holds the workflow primitives too; ours live in ``engine.workflows``, which
# imports this module, so ``from engine.canvas import chain`` looks them up on first use.
_WORKFLOWS = {"chain", "group", "chord", "chunks", "xmap", "xstarmap"}


if TYPE_CHECKING:
    from engine.workflows import chain as chain
    from engine.workflows import chord as chord
    from engine.workflows import chunks as chunks
    from engine.workflows import group as group
    from engine.workflows import xmap as xmap
    from engine.workflows import xstarmap as xstarmap
else:  # (hidden from the type checker, which would take any name of this module as real)

    def __getattr__(name: str) -> Any:
        if name in _WORKFLOWS:
            from engine import workflows

            return getattr(workflows, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
