"""`godo.console`: tables whole in a terminal of any width, plain tab-separated text in a pipe."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from rich.console import Console
from rich.table import Table

from godo.console import allocate, new_table, plain_lines, show

BOX = set("│┃━─┏┓┗┛┡┩└┘┌┐╇┳┻╋┼")


def _terminal(width: int) -> Console:
    return Console(width=width, force_terminal=True, color_system=None, record=True)


def _metrics_table() -> Table:
    headers = ("model", "version", "ndcg@10", "recall@20", "map@10", "mrr", "coverage")
    table = new_table(headers, title="Holdout", numeric=headers[1:])
    table.add_row("final_feed", "12", *(["0.2634"] * 5))
    table.add_row("popularity", "", *(["0.1000"] * 5))
    return table


@pytest.mark.parametrize(
    ("ranges", "budget", "widths"),
    [
        ([(3, 10), (5, 5)], 20, [10, 5]),  # fits: every column at its longest line
        ([(3, 10), (5, 5)], 11, [6, 5]),  # the wrappable column gives up width
        ([(4, 30), (4, 20), (6, 6)], 30, [14, 10, 6]),  # spare width by what would wrap
        ([(4, 30), (4, 20), (6, 6)], 14, [4, 4, 6]),  # down to the longest words
        ([(4, 30), (4, 20), (6, 6)], 11, [3, 4, 4]),  # then words fold, widest first
        ([(1, 1), (1, 1)], 0, [1, 1]),  # never below one character
    ],
)
def test_allocate_gives_longest_words_first_then_spare_width_to_what_would_wrap(
    ranges: list[tuple[int, int]], budget: int, widths: list[int]
) -> None:
    assert allocate(ranges, budget) == widths


@pytest.mark.parametrize("width", [120, 80, 70])
def test_a_terminal_table_keeps_headers_and_numbers_whole_within_the_width(width: int) -> None:
    console = _terminal(width)
    show(console, _metrics_table())
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    for word in ("version", "ndcg@10", "recall@20", "coverage", "final_feed", "popularity"):
        assert word in text
    assert text.count("0.2634") == 5 and text.count("0.1000") == 5 and "…" not in text


def test_boxes_are_kept_while_the_table_fits_and_dropped_before_a_word_is_split() -> None:
    wide, narrow = _terminal(120), _terminal(70)
    show(wide, _metrics_table())
    show(narrow, _metrics_table())
    boxed, compact = wide.export_text(), narrow.export_text()
    assert "┃" in boxed and "│" in boxed
    assert not BOX & set(compact.replace("─", "")) and "─" in compact  # only the header rule


def test_too_narrow_a_terminal_folds_words_but_loses_no_character() -> None:
    table = _metrics_table()
    cells = [str(cell) for column in table.columns for cell in (column.header, *column.cells)]
    console = _terminal(30)
    show(console, table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 30
    expected = Counter(ch for cell in cells for ch in cell if ch.isalnum())
    assert Counter(ch for ch in text if ch.isalnum()) - Counter("Holdout") >= expected


def test_outside_a_terminal_a_table_is_tab_separated_with_its_title_as_a_comment() -> None:
    table = new_table(("step", "checks"), title="Run [bold]now[/]")
    table.add_row("[bold]total[/]", "3/3 passed\n[red]late[/]")
    table.add_row("a\tb", "")
    out = io.StringIO()
    show(Console(file=out, width=20), table)
    assert out.getvalue() == "# Run now\nstep\tchecks\ntotal\t3/3 passed; late\na b\t\n"
    assert plain_lines(table)[1:] == out.getvalue().splitlines()[1:]
