"""The built-in seq2seq tasks: determinism, targets checked independently, disjoint splits."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from _errors import one_line_error
from rnnkit.data.seq2seq_tasks import (
    DATE_FORMATS,
    TASKS,
    make_splits,
    make_task,
    render_date,
    task_settings,
)

# An independent reading of each date format: a strptime pattern (English names in the C
# locale, case-insensitive) and the casing of the letters. %y is remapped to 1950..2049.
PATTERNS = [
    ("%d %B %Y", "mixed"),
    ("%B %d, %Y", "mixed"),
    ("%b %d %Y", "mixed"),
    ("%m/%d/%Y", "none"),
    ("%m/%d/%y", "none"),
    ("%d.%m.%Y", "none"),
    ("%d.%m.%y", "none"),
    ("%Y/%m/%d", "none"),
    ("%Y%m%d", "none"),
    ("%A, %B %d, %Y", "mixed"),
    ("%d of %B %Y", "mixed"),  # after the ordinal suffix is removed
    ("%d-%b-%y", "mixed"),
    ("%B %d, %Y", "upper"),
    ("%d %b %Y", "lower"),
    ("%a %d %b %Y", "mixed"),
]


def casing(text: str) -> str:
    if not any(c.isalpha() for c in text):
        return "none"
    return "upper" if text == text.upper() else "lower" if text == text.lower() else "mixed"


def parse(text: str, pattern: str) -> dt.date | None:
    plain = re.sub(r"\b(\d+)(st|nd|rd|th) of\b", r"\1 of", text)
    try:
        date = dt.datetime.strptime(plain, pattern).date()
    except ValueError:
        return None
    if "%y" in pattern and date.year >= 2050:  # strptime reads 50..68 as 2050..2068
        date = date.replace(year=date.year - 100)
    if "%y" in pattern and date.year < 1950:
        return None
    return date


def readings(text: str) -> dict[int, dt.date]:
    """Index of each pattern that reads ``text``, with the date it reads."""
    out = {}
    for k, (pattern, case) in enumerate(PATTERNS):
        date = parse(text, pattern)
        if date is not None and casing(text) == case:
            out[k] = date
    return out


def test_unknown_task_and_options():
    one_line_error(lambda: make_task("copy", 3, seed=0), "'copy'", "reverse, sort, dates, addition")
    one_line_error(lambda: make_task("reverse", 3, seed=0, max_digits=2), "max_digits", "min_len")
    one_line_error(lambda: make_task("dates", 3, seed=0, min_len=2), "options: none")
    one_line_error(lambda: make_task("sort", 3, seed=0, min_len=6, max_len=5), "below min_len")
    one_line_error(lambda: make_task("addition", 3, seed=0, max_digits=0), "positive integer")
    one_line_error(lambda: make_task("addition", 3, seed=0, max_digits=19), "at most 18")
    one_line_error(lambda: make_task("sort", -1, seed=0), "n must be a non-negative")
    assert make_task("sort", 0, seed=0) == []


@pytest.mark.parametrize("name", TASKS)
def test_tasks_are_deterministic_by_seed(name):
    first = make_task(name, 200, seed=11)
    assert make_task(name, 200, seed=11) == first
    assert make_task(name, 50, seed=11) == first[:50]  # a prefix of the same stream
    other = make_task(name, 200, seed=12)
    assert sum(a == b for a, b in zip(first, other, strict=True)) < 10


def test_reverse():
    pairs = make_task("reverse", 2000, seed=0)
    assert all(t == s[::-1] for s, t in pairs)
    assert all(re.fullmatch("[a-z]+", s) for s, _ in pairs)
    lengths = Counter(len(s) for s, _ in pairs)
    assert set(lengths) == set(range(20, 31))  # uniform over 20..30: 11 values, ~182 each
    assert min(lengths.values()) > 120
    letters = Counter("".join(s for s, _ in pairs))
    assert len(letters) == 26
    assert make_task("reverse", 5, seed=0, min_len=3, max_len=3)[0][0].__len__() == 3


def test_sort():
    pairs = make_task("sort", 2000, seed=1)
    assert all(t == "".join(sorted(s)) for s, t in pairs)
    assert all(re.fullmatch("[0-9]+", s) for s, _ in pairs)
    assert {len(s) for s, _ in pairs} == set(range(5, 16))


def test_addition():
    pairs = make_task("addition", 3000, seed=2)
    operands = []
    for source, target in pairs:
        a, b = source.split("+")
        assert int(a) + int(b) == int(target)
        assert str(int(a)) == a and str(int(b)) == b  # no leading zeros
        operands += [int(a), int(b)]
    assert min(operands) >= 0 and max(operands) <= 999
    assert max(operands) > 990 and min(operands) < 10
    small = make_task("addition", 500, seed=0, max_digits=1)
    assert {int(s.split("+")[0]) for s, _ in small} == set(range(10))


def test_dates_every_format_parses_back_to_the_target():
    pairs = make_task("dates", 3000, seed=3)
    seen = Counter()
    for source, target in pairs:
        date = dt.date.fromisoformat(target)
        assert dt.date(1950, 1, 1) <= date <= dt.date(2049, 12, 31)
        found = readings(source)
        assert found, source
        # Unambiguous: every format that reads the text reads the same date.
        assert set(found.values()) == {date}, (source, found)
        seen.update(found.keys())
        # strptime ignores a weekday name once it has the date: check it here.
        if any("%A" in PATTERNS[k][0] or "%a" in PATTERNS[k][0] for k in found):
            weekday = date.strftime("%A")
            assert source.split()[0] in (weekday + ",", weekday[:3]), source
    assert len(DATE_FORMATS) == len(PATTERNS) >= 12
    assert sorted(seen) == list(range(len(PATTERNS)))  # every format appears
    years = Counter(dt.date.fromisoformat(t).year // 10 * 10 for _, t in pairs)
    assert set(years) == set(range(1950, 2050, 10))  # all ten decades


def test_date_rendering_by_hand():
    wed = dt.date(2021, 3, 3)
    rendered = [render_date(wed, fmt) for fmt in DATE_FORMATS]
    assert rendered == [
        "3 March 2021", "March 3, 2021", "Mar 3 2021", "03/03/2021", "3/3/21", "3.3.2021",
        "03.03.21", "2021/03/03", "20210303", "Wednesday, March 3, 2021", "3rd of March 2021",
        "03-Mar-21", "MARCH 3, 2021", "3 mar 2021", "Wed 3 Mar 2021",
    ]  # fmt: skip
    ordinals = [render_date(dt.date(2021, 1, d), "dth of Month Y").split()[0]
                for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)]  # fmt: skip
    assert ordinals == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st",
    ]  # fmt: skip
    # Two-digit years: 50..99 are 19xx, 00..49 are 20xx.
    assert render_date(dt.date(1950, 1, 1), "dd.mm.yy") == "01.01.50"
    assert render_date(dt.date(2049, 12, 31), "m/d/yy") == "12/31/49"
    assert render_date(dt.date(2000, 5, 9), "dd-Mon-yy") == "09-May-00"
    one_line_error(lambda: render_date(wed, "ISO"), "unknown date format")


def test_task_settings_bound_the_data():
    for name in TASKS:
        settings = task_settings(name)
        assert settings.kind == "char"
        pairs = make_task(name, 2000, seed=4)
        assert max(len(s) for s, _ in pairs) <= settings.max_source_length
        assert max(len(t) for _, t in pairs) <= settings.max_target_length
    reverse = task_settings("reverse")
    assert (reverse.max_source_length, reverse.max_target_length) == (30, 30)
    assert task_settings("dates").max_target_length == 10
    assert task_settings("dates").max_source_length == len("Wednesday, September 29, 2021")
    assert task_settings("addition", max_digits=5).max_target_length == 6
    assert task_settings("addition", max_digits=5).max_source_length == 11
    assert task_settings("sort", max_len=40).max_target_length == 40


@pytest.mark.parametrize("name", TASKS)
def test_splits_are_disjoint_and_deterministic(name):
    train, val, test = make_splits(name, 1500, 200, 300, seed=5)
    assert (len(train), len(val), len(test)) == (1500, 200, 300)
    sources = [[s for s, _ in part] for part in (train, val, test)]
    everything = sources[0] + sources[1] + sources[2]
    assert len(set(everything)) == 2000  # distinct within and across parts
    assert make_splits(name, 1500, 200, 300, seed=5) == (train, val, test)
    # Test and validation stay put when only the training size changes.
    bigger = make_splits(name, 1800, 200, 300, seed=5)
    assert bigger[1:] == (val, test) and bigger[0][:1500] == train


def test_splits_of_a_small_task_space():
    one_line_error(
        lambda: make_splits("addition", 120, 20, 10, seed=0, max_digits=1),
        "only 100 distinct sources",
        "150 asked",
    )
    one_line_error(lambda: make_splits("sort", 0, 5, 5, seed=0), "n_train must be at least 1")
