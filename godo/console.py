"""Tables of the `godo` commands: whole in a terminal of any width, plain text in a pipe.

Rich's own layout squeezes every column of a table wider than the terminal and cuts cells
with an ellipsis (`versi…`, `ndcg@…`, `0.26…` at 80 columns). `show` lays the table out
itself instead: a column gives up width only while it is wider than its longest word, so
numbers and headers stay whole and long text wraps between words; when even that does not
fit, the boxes go before any word is split (and a word is folded onto the next line, never
cut). When the output is not a terminal, a table is printed as tab-separated lines (a
`# title` line first), which `cut`, `awk` and spreadsheets read, with no box drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

# Wide enough that measuring never clamps a cell: the natural width of the longest line.
_UNBOUNDED = 100_000


def new_table(
    headers: Sequence[str],
    *,
    title: str | None = None,
    numeric: Collection[str] = (),
    unbroken: Collection[str] = (),
) -> Table:
    """A table of these columns, the `numeric` ones right-aligned; cells wrap between words,
    except in the `unbroken` columns (a date), and are never cut."""
    table = Table(title=title)
    for header in headers:
        table.add_column(
            header,
            justify="right" if header in numeric else "left",
            overflow="fold",
            no_wrap=header in unbroken,
        )
    return table


def show(console: Console, table: Table) -> None:
    """Print `table` fitted to a terminal's width, or as plain text when not a terminal."""
    if console.is_terminal:
        fit(console, table, console.width)
        console.print(table)
    else:  # written as is: Rich would expand the tabs and wrap at its width
        console.file.write("".join(f"{line}\n" for line in plain_lines(table)))


def plain_lines(table: Table) -> list[str]:
    """`# title`, then the header and each row, tab-separated; a cell's lines joined by `; `."""
    lines = [] if table.title is None else [f"# {_plain(table.title)}"]
    lines.append("\t".join(_plain(column.header) for column in table.columns))
    rows = zip(*(list(column.cells) for column in table.columns), strict=True)
    lines.extend("\t".join(_plain(cell) for cell in row) for row in rows)
    return lines


def _plain(cell: RenderableType) -> str:
    if isinstance(cell, str):
        text = Text.from_markup(cell).plain
    elif isinstance(cell, Text):
        text = cell.plain
    else:
        text = str(cell)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()).replace("\t", " ")


def _boxed(table: Table) -> None:
    table.box, table.show_edge, table.padding = box.HEAVY_HEAD, True, (0, 1)
    table.collapse_padding, table.pad_edge = False, True


def _compact(table: Table) -> None:
    """No outer edge or vertical lines: two spaces between columns."""
    table.box, table.show_edge, table.padding = box.SIMPLE_HEAD, False, (0, 1)
    table.collapse_padding, table.pad_edge = True, False


def _tight(table: Table) -> None:
    """One space between columns, the least a table can spend on anything but its cells."""
    table.box, table.show_edge, table.padding = box.SIMPLE_HEAD, False, (0, 0)
    table.collapse_padding, table.pad_edge = False, False


STYLES: tuple[Callable[[Table], None], ...] = (_boxed, _compact, _tight)


def fit(console: Console, table: Table, width: int) -> None:
    """Choose the first style whose table fits `width` with every word whole, and fix each
    column's width (`allocate`)."""
    if not table.columns:
        return
    ranges = [_content_range(console, column) for column in table.columns]
    least = [low for low, _ in ranges]
    for style in STYLES:
        style(table)
        chrome = _chrome(console, table, least)
        if sum(least) + chrome <= width:
            break
    for column, column_width in zip(table.columns, allocate(ranges, width - chrome), strict=True):
        column.width = column_width


def _content_range(console: Console, column: Column) -> tuple[int, int]:
    """(narrowest, widest) the column's header and cells can be: the longest word (the
    longest line when the column must not wrap), and the longest line."""
    options = console.options.update_width(_UNBOUNDED)
    measured = [Measurement.get(console, options, c) for c in (column.header, *column.cells)]
    widest = max(1, *(m.maximum for m in measured))
    return (widest if column.no_wrap else max(1, *(m.minimum for m in measured))), widest


def _chrome(console: Console, table: Table, widths: Sequence[int]) -> int:
    """What the current style spends beside the cells: edges, dividers, padding."""
    for column, column_width in zip(table.columns, widths, strict=True):
        column.width = column_width
    options = console.options.update_width(_UNBOUNDED)
    return Measurement.get(console, options, table).maximum - sum(widths)


def allocate(ranges: Sequence[tuple[int, int]], budget: int) -> list[int]:
    """Column widths within `budget` from each column's (longest word, longest line).

    Every column gets its longest word; the width left over goes to the columns that would
    wrap, in proportion to how much wider their longest line is (the way a browser lays out
    an automatic table), so a long description gets more than a short list. Only when even
    the longest words do not fit does the widest column fold words (never below 1).
    """
    lows, highs = [low for low, _ in ranges], [high for _, high in ranges]
    if sum(highs) <= budget:
        return highs
    if sum(lows) <= budget:
        slack = [high - low for low, high in ranges]
        spare = budget - sum(lows)
        widths = [low + spare * more // sum(slack) for low, more in zip(lows, slack, strict=True)]
        short = budget - sum(widths)  # less than the number of columns: rounding down
        by_need = sorted(range(len(widths)), key=lambda i: widths[i] - highs[i])
        for i in by_need[:short]:
            widths[i] += 1
        return widths
    widths = lows
    for _ in range(sum(lows) - budget):
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] == 1:
            break
        widths[widest] -= 1
    return widths


def progress_columns() -> tuple[ProgressColumn, ...]:
    """Spinner, step name, bar, steps done of all, time: the bars of `godo demo` and `evaluate`."""
    return (
        SpinnerColumn(),
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


@contextmanager
def step_progress(console: Console, total: int) -> Iterator[Callable[[str], None]]:
    """A bar of `total` steps on `console` while the block runs, only if it is a terminal.

    Yields the callback a step calls as it starts: it counts the step before as done and
    shows the new one's name. A log file or a pipe gets nothing: no bar frames in it.
    """
    if not console.is_terminal:
        yield lambda _: None
        return
    with Progress(*progress_columns(), console=console, transient=True) as progress:
        task = progress.add_task("starting", total=total)
        started = 0

        def begin(step: str) -> None:
            nonlocal started
            progress.update(task, description=step, completed=started, refresh=True)
            started += 1

        yield begin
