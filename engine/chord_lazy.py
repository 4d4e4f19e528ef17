"""A chord whose header is a generator: its tasks go out one by one as the generator yields them.

Celery (#3021) keeps such a header lazy, so a long or slow generator starts work at once
instead of after it has been read to the end. The chord's size is only known at the last
member; it is written just before that member is sent (a look-ahead of one), so the body
still starts exactly once, after every member has counted itself in. As in Celery, the
generator is read two members ahead at the start, then one ahead of each member sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.protocol.task import new_id

if TYPE_CHECKING:
    from engine.app import App
    from engine.canvas import Signature
    from engine.result import AsyncResult


def members(items: Iterator[Any], app: App | None) -> Iterator[Signature]:
    """Each header task as the generator yields it, nested groups opened, empty chains dropped."""
    from engine.workflows import Chain, Group, from_dict

    for item in items:
        sig = from_dict(item, app)
        if isinstance(sig, Group):
            yield from sig._unrolled()
        elif isinstance(sig, Chain) and not sig.tasks:
            continue
        else:
            yield sig


def run(
    app: App,
    items: Iterator[Any],
    body: Signature,
    partial: list[Any],
    kwargs: dict[str, Any] | None,
    task_id: str | None,
    header_delay: dict[str, Any],
    options: dict[str, Any],
) -> AsyncResult:
    """Celery's ``chord.run`` for a lazy header: freeze the body, then send member after member."""
    from engine.group_result import GroupResult
    from engine.workflows import descend, strip_chord_header_links

    group_id = new_id()
    root_id = body.options.get("root_id")
    for callback in _as_list(options.pop("link", None)):
        body.link(callback)
    for errback in _as_list(options.pop("link_error", None)):
        body.link_error(errback)
    body.options.update({k: v for k, v in options.items() if k != "parent_id"})
    body_result = body.freeze(task_id or new_id(), group_id=group_id, root_id=root_id)
    strip_chord_header_links(body)
    for key in ("chain", "chord", "task_id", "group_index", "group_id"):
        options.pop(key, None)
    header_result = GroupResult(group_id, [], app=app)
    body_result.parent = header_result
    pending = members(items, app)
    upcoming = next(pending, None)
    if upcoming is None:
        body.apply_async(([],))
        return body_result
    following = next(pending, None)  # Celery's look-ahead: the member after the one being sent
    size, index = 0, 0
    while upcoming is not None:
        member = upcoming.clone()
        header_result.results.append(member.freeze(group_id=group_id, root_id=root_id, group_index=index))
        size += descend(member, app)
        if following is None:
            app.chord_join().set_size(group_id, size)
        member.apply_async(partial, kwargs, chord=body, group_id=group_id, **options, **header_delay)
        upcoming = following
        following = next(pending, None) if following is not None else None
        index += 1
    return body_result


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
