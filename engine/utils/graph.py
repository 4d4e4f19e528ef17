"""The dependency graph ``AsyncResult.build_graph()`` returns (Celery's ``celery.utils.graph``
names): which task result started which, to walk in order or draw with Graphviz (``to_dot``)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import IO, Any


class GraphFormatter:
    """How ``to_dot`` writes nodes and edges; ``root`` (a result id) is drawn filled."""

    def __init__(self, root: Any = None, type: str = "digraph", id: str = "dependencies", shape: str = "box") -> None:
        self.root, self.type, self.id, self.shape = root, type, id, shape

    def label(self, obj: Any) -> str:
        return str(obj)

    def head(self) -> str:
        return f'{self.type} {self.id} {{\n    graph [rankdir="LR"]'

    def tail(self) -> str:
        return "}"

    def node(self, obj: Any) -> str:
        filled = ", style=filled" if self.root is not None and self.label(obj) == str(self.root) else ""
        return f'    "{self.label(obj)}" [shape={self.shape}{filled}]'

    terminal_node = node

    def edge(self, a: Any, b: Any) -> str:
        arrow = "->" if self.type == "digraph" else "--"
        return f'    "{self.label(a)}" {arrow} "{self.label(b)}"'


class DependencyGraph:
    """Objects and what each depends on: ``add_edge(a, b)`` reads "``a`` depends on ``b``" (for a
    result: ``a`` started ``b``). ``update`` takes ``(obj, dependencies)`` pairs."""

    def __init__(self, it: Iterable[tuple[Hashable, Iterable[Hashable]]] | None = None, formatter: Any = None) -> None:
        self.formatter = formatter or GraphFormatter()
        self.adjacent: dict[Any, list[Any]] = {}
        if it is not None:
            self.update(it)

    def add_arc(self, obj: Any) -> None:
        self.adjacent.setdefault(obj, [])

    def add_edge(self, a: Any, b: Any) -> None:
        self.adjacent[a].append(b)

    def connect(self, graph: DependencyGraph) -> None:
        self.adjacent.update(graph.adjacent)

    def update(self, it: Iterable[tuple[Any, Iterable[Any]]]) -> None:
        pairs = [(obj, list(deps)) for obj, deps in it]
        for obj, _ in pairs:
            self.add_arc(obj)
        for obj, deps in pairs:
            for dep in deps:
                self.add_edge(obj, dep)

    def edges(self) -> Iterator[Any]:
        """The objects that depend on something."""
        return (obj for obj, deps in self.adjacent.items() if deps)

    def valency_of(self, obj: Any) -> int:
        """How many dependencies ``obj`` has, counting theirs too."""
        deps = self.adjacent.get(obj)
        return 0 if deps is None else len(deps) + sum(self.valency_of(dep) for dep in deps)

    def topsort(self) -> list[Any]:
        """Every object after the ones it depends on: the order to handle them in."""
        order: list[Any] = []
        seen: set[Any] = set()
        for start in self.adjacent:
            if start in seen:
                continue
            seen.add(start)
            stack: list[tuple[Any, Iterator[Any]]] = [(start, iter(self.adjacent[start]))]
            while stack:
                obj, deps = stack[-1]
                dep = next((d for d in deps if d not in seen), None)
                if dep is None:
                    order.append(obj)
                    stack.pop()
                else:
                    seen.add(dep)
                    stack.append((dep, iter(self.adjacent.get(dep, ()))))
        return order

    def to_dot(self, fh: IO[str], formatter: Any = None) -> None:
        """The graph in Graphviz's DOT language (``dot -Tpng``), each node once."""
        draw = formatter or self.formatter
        drawn: set[str] = set()

        def once(line: str, obj: Any) -> None:
            if draw.label(obj) not in drawn:
                drawn.add(draw.label(obj))
                print(line, file=fh)

        print(draw.head(), file=fh)
        for obj, deps in self.adjacent.items():
            once(draw.terminal_node(obj) if not deps else draw.node(obj), obj)
            for dep in deps:
                print(draw.edge(obj, dep), file=fh)
        print(draw.tail(), file=fh)

    def format(self, obj: Any) -> Any:
        return self.formatter.label(obj) if self.formatter else obj

    def items(self) -> Iterator[tuple[Any, list[Any]]]:
        return iter(self.adjacent.items())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.adjacent)

    def __getitem__(self, obj: Any) -> list[Any]:
        return self.adjacent[obj]

    def __len__(self) -> int:
        return len(self.adjacent)

    def __contains__(self, obj: object) -> bool:
        return obj in self.adjacent

    def __repr__(self) -> str:
        return "\n".join(f"{self.format(obj)}({self.valency_of(obj)})" for obj in self.adjacent)
