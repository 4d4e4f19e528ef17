"""A DataTable that fits its columns to the width, keeps the cursor on its row and supports marks.

Each screen describes columns once (label, width, priority) and hands over complete rows on every
refresh; the table drops the lowest-priority columns that do not fit (80 columns stays readable),
skips the redraw when nothing changed and puts the cursor back on the same row key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

MARK = "◆"
MIN_GROW = 8  # the growing column never gets narrower than this


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int
    priority: int = 1  # 1 = always shown; higher numbers are dropped first when narrow
    grow: bool = False  # takes the width left over (one per table)
    keep_end: bool = False  # clip on the left (``…ders.process_order``): the end of dotted names says most


Row = tuple[str, Sequence[str | Text]]


class ConsoleTable(DataTable):
    DEFAULT_CSS = """
    ConsoleTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", show=False),
        Binding("k", "cursor_up", show=False),
        Binding("g", "scroll_top", show=False),
        Binding("G", "scroll_bottom", show=False),
        # DataTable's Home/End scroll sideways (a row cursor has no column to go to): rows here, as help says
        Binding("home", "scroll_top", show=False),
        Binding("end", "scroll_bottom", show=False),
    ]

    def __init__(self, columns: Sequence[Col], *, id: str | None = None, marks: bool = False) -> None:  # noqa: A002
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=1)
        self.specs = list(columns)
        self.marks_enabled = marks
        self.marked: set[str] = set()
        self.row_keys: list[str] = []
        self._signature: object = None
        self._shown: list[Col] = []
        self._last_rows: list[Row] = []
        self._needs: dict[str, int] = {}  # the longest cell of each keep_end column
        self.follow_key = True  # keep the cursor on the same row key; False: on the same index (a tail)

    # -- columns ----------------------------------------------------------------------------------
    def _fit(self, width: int, needs: dict[str, int] | None = None) -> list[Col]:
        """The columns that fit ``width``. The width left over goes first to clipped names
        (``keep_end`` columns, up to ``needs``: their longest cell), then to the ``grow`` column:
        at 132 columns ``…les.shop.new_orders`` was cut while DETAIL had 70 columns to spare."""
        pad = 2 * self.cell_padding
        budget = width - (2 if self.marks_enabled else 0) - 2  # scrollbar and mark column
        chosen: list[Col] = []
        used = 0
        for col in sorted(self.specs, key=lambda c: c.priority):
            if used + col.width + pad <= budget or col.priority == 1:
                chosen.append(col)
                used += col.width + pad
        shown = [c for c in self.specs if c in chosen]
        # Too narrow even for the columns always shown (Audit at 60): the growing column gives
        # way, so its text ends in "…" rather than at the screen's edge, mid-word.
        spare = max(budget - used, -max((c.width - MIN_GROW for c in shown if c.grow), default=0))
        out = []
        for c in shown:
            wanted = max((needs or {}).get(c.key, 0) - c.width, 0) if c.keep_end and not c.grow else 0
            extra = min(max(spare, 0), wanted)
            spare -= extra
            out.append(Col(c.key, c.label, c.width + extra, c.priority, c.grow, c.keep_end) if extra else c)
        return [Col(c.key, c.label, c.width + spare, c.priority, c.grow, c.keep_end) if c.grow else c for c in out]

    def _columns_for_width(self) -> list[Col]:
        width = self.size.width or (self.app.size.width if self.is_attached else 80)
        return self._fit(width, self._needs)

    def _measure(self, rows: Sequence[Row]) -> dict[str, int]:
        """The longest cell of each ``keep_end`` column (what it needs to show names whole)."""
        index = {c.key: i for i, c in enumerate(self.specs)}
        needs = {}
        for col in self.specs:
            if col.keep_end and not col.grow:
                i = index[col.key]
                cells = (cells[i] for _, cells in rows if i < len(cells))
                needs[col.key] = max((len(c.plain if isinstance(c, Text) else c) for c in cells), default=0)
        return needs

    def shows(self, key: str) -> bool:
        """Whether column ``key`` fits at the current width (a status line explains only those)."""
        return any(c.key == key for c in self._columns_for_width())

    # -- rows -------------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[Row]) -> None:
        """Replace the rows (only redraws when the shown text changed)."""
        self._last_rows = list(rows)
        self._needs = self._measure(rows)
        columns = self._columns_for_width()
        signature = (
            tuple(c.key + str(c.width) for c in columns),
            tuple(sorted(self.marked)),
            tuple((k, tuple(str(c) for c in cells)) for k, cells in rows),
        )
        if signature == self._signature:
            return
        self._signature = signature
        keep_key = self.current_key
        keep_index = self.cursor_row
        scroll_y = self.scroll_y
        if columns != self._shown:
            self.clear(columns=True)
            if self.marks_enabled:
                self.add_column(" ", width=1, key="__mark")
            for col in columns:
                self.add_column(col.label, width=col.width, key=col.key)
            self._shown = columns
        else:
            self.clear()
        index = {c.key: i for i, c in enumerate(self.specs)}
        self.row_keys = []
        for key, cells in rows:
            picked = [self._clip(cells[index[c.key]], c.width, c.keep_end) for c in columns]
            if self.marks_enabled:
                picked.insert(0, Text(MARK, style="bold") if key in self.marked else "")
            self.add_row(*picked, key=key)
            self.row_keys.append(key)
        if not self.row_keys:
            return
        if self.follow_key and keep_key in self.row_keys:
            target = self.row_keys.index(keep_key)
        else:
            target = min(keep_index, len(rows) - 1)
        self.move_cursor(row=target, animate=False, scroll=False)
        self.scroll_y = min(scroll_y, max(self.virtual_size.height - self.size.height, 0))
        if target < self.scroll_y or target >= self.scroll_y + max(self.size.height - 1, 1):
            self.move_cursor(row=target, animate=False)

    @staticmethod
    def _clip(cell: str | Text, width: int, keep_end: bool = False) -> str | Text:
        plain = cell.plain if isinstance(cell, Text) else cell
        if len(plain) <= width:
            return cell
        if keep_end:
            return "…" + plain[-(width - 1) :]
        if isinstance(cell, Text):
            cut = cell.copy()
            cut.truncate(width - 1)
            cut.append("…")
            return cut
        return plain[: width - 1] + "…"

    def on_resize(self) -> None:
        if self._last_rows or self.row_count == 0:
            self._signature = None
            self.set_rows(self._last_rows)

    @property
    def current_key(self) -> str | None:
        if not self.row_keys or self.cursor_row < 0 or self.cursor_row >= len(self.row_keys):
            return None
        return self.row_keys[self.cursor_row]

    def select_key(self, key: str) -> bool:
        if key in self.row_keys:
            self.move_cursor(row=self.row_keys.index(key), animate=False)
            return True
        return False

    # -- marks ------------------------------------------------------------------------------------
    def toggle_mark(self) -> None:
        key = self.current_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self._signature = None
        self.set_rows(self._last_rows)
        if self.cursor_row < len(self.row_keys) - 1:
            self.move_cursor(row=self.cursor_row + 1, animate=False)

    def mark_all(self) -> None:
        self.marked.update(self.row_keys)
        self._signature = None
        self.set_rows(self._last_rows)

    def clear_marks(self) -> None:
        self.marked.clear()
        self._signature = None
        self.set_rows(self._last_rows)

    def marked_shown(self) -> list[str]:
        """Marked rows still shown (a mark on a row filtered away is not acted on)."""
        return [k for k in self.row_keys if k in self.marked]

    def targets(self) -> list[str]:
        """Marked rows still shown, else the row under the cursor."""
        marked = self.marked_shown()
        if marked:
            return marked
        key = self.current_key
        return [key] if key else []
