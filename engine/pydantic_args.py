"""``@app.task(pydantic=True)``: arguments annotated with a pydantic model are validated into the
model on the worker, a returned model is dumped to plain data, and a caller's models are sent as
plain data (Celery 5.7's behaviour). pydantic is optional: the ``pydantic`` extra (``engine.extras``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from engine.exceptions import ImproperlyConfigured
from engine.extras import install_hint

if TYPE_CHECKING:
    from engine.app import App


class _Model(Protocol):
    """What is used of ``pydantic.BaseModel`` here (pydantic is an optional extra)."""

    def model_dump(self, **kwargs: Any) -> Any: ...


def _optional_inner(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``, else None."""
    args = typing.get_args(annotation)
    if len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _is_model(annotation: Any, base: type) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, base)


def pydantic_wrapper(
    app: App,
    fun: Callable[..., Any],
    task_name: str,
    strict: bool,
    context: dict[str, Any] | None,
    dump_kwargs: dict[str, Any] | None,
    bound: bool = False,
) -> tuple[Callable[..., Any], Callable[..., tuple[Any, Any]]]:
    """(the function ``run`` calls, the caller-side argument dumper)."""
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured(
            f"You need to install pydantic to use pydantic model serialization ({install_hint('pydantic')})."
        ) from exc
    base_model: type[_Model] = pydantic.BaseModel
    context = dict(context or {})
    dump_opts = {"mode": "json", **(dump_kwargs or {})}
    sig = inspect.signature(fun)
    try:
        hints = typing.get_type_hints(fun)
    except (NameError, AttributeError, TypeError):
        hints = {}

    def model_for(arg_name: str, value: Any) -> type | None:
        annotation = hints.get(arg_name, sig.parameters[arg_name].annotation)
        inner = _optional_inner(annotation)
        if inner is not None and value is not None:
            annotation = inner
        return annotation if _is_model(annotation, base_model) else None

    def validate(model: Any, value: Any) -> Any:
        return model.model_validate(
            value, strict=strict, context={**context, "celery_app": app, "celery_task_name": task_name}
        )

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound_args = sig.bind(*args, **kwargs)
        for arg_name, value in bound_args.arguments.items():
            model = model_for(arg_name, value)
            if model is not None:
                bound_args.arguments[arg_name] = validate(model, value)
        returned = fun(*bound_args.args, **bound_args.kwargs)
        annotation = hints.get("return", sig.return_annotation)
        annotation = _optional_inner(annotation) or annotation
        if inspect.isclass(annotation) and isinstance(returned, base_model) and isinstance(returned, annotation):
            return returned.model_dump(**dump_opts)
        return returned

    params = list(sig.parameters.values())[1 if bound else 0 :]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keywords = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def dump_one(arg_name: str | None, value: Any) -> Any:
        """Only a model the worker would rebuild as an equal model is dumped; others go as they are."""
        if arg_name is None or not isinstance(value, base_model) or hasattr(type(value), "__json__"):
            return value
        model = model_for(arg_name, value)
        if model is None:
            return value
        try:
            dumped = value.model_dump(**dump_opts)
            if validate(model, dumped) == value:
                return dumped
        except Exception:  # a validator that only works on the worker: send the model as it is
            pass
        return value

    def dump_arguments(args: Any, kwargs: Any) -> tuple[Any, Any]:
        task_args = () if args is None else args
        task_kwargs = {} if kwargs is None else kwargs
        if not isinstance(task_args, (list, tuple)) or not isinstance(task_kwargs, Mapping):
            return args, kwargs
        if not any(isinstance(v, base_model) for v in (*task_args, *task_kwargs.values())):
            return args, kwargs
        new_args = [dump_one(positional[i] if i < len(positional) else None, v) for i, v in enumerate(task_args)]
        new_kwargs = {k: dump_one(k if k in keywords else None, v) for k, v in task_kwargs.items()}
        return new_args, new_kwargs

    return wrapper, dump_arguments
