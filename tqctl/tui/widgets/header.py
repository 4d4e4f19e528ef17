"""Top two lines: which cluster this is, how alive it looks, the access badge and the screen tabs."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tqctl.tui import format as fmt

NAV = (
    ("1", "overview", "Overview"),
    ("2", "workers", "Workers"),
    ("3", "queues", "Queues"),
    ("4", "tasks", "Tasks"),
    ("5", "failures", "Failures"),
    ("6", "scheduled", "Scheduled"),
    ("7", "dead", "Dead"),
    ("8", "audit", "Audit"),
)
SHORT = {"Scheduled": "Sched"}
# Under 80 columns every tab still fits (60 columns: all eight): its key and a short name.
NARROW = {"Overview": "Over", "Workers": "Work", "Queues": "Queue", "Failures": "Fail", "Scheduled": "Sched"}


class ClusterHeader(Static):
    DEFAULT_CSS = """
    ClusterHeader { height: 2; dock: top; background: $panel; color: $foreground; }
    """

    def render_header(
        self,
        *,
        url: str,
        transport: str,
        online: int,
        total: int,
        events_per_second: float,
        read_only: bool,
        current: str,
        connected: bool,
        now: float,
        paused: bool = False,
        down_what: str = "broker",
    ) -> None:
        width = self.size.width or 80
        line1 = Text(no_wrap=True, overflow="ellipsis")
        line1.append(" tqctl ", style="bold reverse")
        line1.append(" ")
        # The URL gives way, never what kind of cluster this is: a demo cut to "redis://…" looks real.
        kind = Text(" DEMO ", style="bold reverse") if transport == "demo" else Text(f"({transport})")
        for parts in _RIGHT_PARTS:  # a narrow terminal drops the rate, then the clock
            right = _right(parts, online, total, connected, events_per_second, now, read_only, paused, down_what)
            room = width - len(line1) - len(right) - len(kind) - 2
            if room >= 10:
                break
        line1.append(fmt.clip(url, max(room, 4)) + " ")
        line1.append_text(kind)
        line1.append(" " * max(width - len(line1) - len(right), 1))
        line1.append_text(right)
        line2 = Text(no_wrap=True, overflow="ellipsis")
        for key, mode, label in NAV:
            if width < 80:
                line2.append(" ")
                line2.append(f"{key} {NARROW.get(label, label)}", style="bold reverse" if mode == current else "")
                continue
            name = SHORT.get(label, label) if width < 100 else label
            line2.append(f" {key} {name} ", style="bold reverse" if mode == current else "")
        # Each line is cut, never wrapped: a wrapped first line pushed the tabs out of the header.
        line1.truncate(width)
        line2.truncate(width)
        self.update(Text("\n", no_wrap=True).join([line1, line2]))


_RIGHT_PARTS = (("rate", "clock"), ("clock",), ())


def _right(
    parts: tuple[str, ...],
    online: int,
    total: int,
    connected: bool,
    events_per_second: float,
    now: float,
    read_only: bool,
    paused: bool,
    down_what: str = "broker",
) -> Text:
    """The header's right end: pause mark, workers (or broker down), rate and clock, access badge."""
    right = Text()
    if paused:
        right.append(" ‖ PAUSED ", style="bold reverse")
        right.append(" ")
    down = f"✗ {down_what.split()[-1]} down"  # "broker down", "backend down"
    right.append(f"● {online}/{total} workers" if connected else down, style="" if connected else "bold red")
    if "rate" in parts:
        right.append(f" │ {fmt.rate(events_per_second)} ev/s")
    if "clock" in parts:
        right.append(f" │ {fmt.clock(now)}")
    right.append(" ")
    right.append(" RO " if read_only else " RW ", style="bold reverse" if read_only else "bold")
    return right


class Banner(Static):
    """Shown only while the broker is unreachable: what failed and when the next attempt is."""

    # At most 3 lines, what it means first and the error's own words last: the error names the
    # socket path up to three times, and at 60x20 the banner took 6 of the 20 lines with the
    # "reconnecting in" part at its very end.
    DEFAULT_CSS = """
    Banner { height: auto; max-height: 3; background: $error; color: $text; display: none; padding: 0 1; }
    Banner.-shown { display: block; }
    """

    def show_state(
        self,
        connected: bool,
        error: str | None,
        retry_in: float | None,
        down_for: float | None,
        what: str = "broker",
    ) -> None:
        if connected:
            if self.has_class("-shown"):  # no stale line left behind to read (or to flash on the next outage)
                self.remove_class("-shown")
                self.update("")
            return
        self.add_class("-shown")
        text = f"⚠ {what} unreachable" + (f" for {fmt.age(down_for)}" if down_for is not None else "")
        if retry_in is not None:
            text += f" · reconnecting in {retry_in:.0f}s · showing data from before"
        text += f" · {error or 'no answer'}"
        self.update(Text(text, no_wrap=False, overflow="ellipsis"))
