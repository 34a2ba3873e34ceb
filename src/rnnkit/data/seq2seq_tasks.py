"""Built-in sequence-to-sequence tasks, generated from a seed (no download).

=============  =======================  =================  ==========================
task           source                   target             options (defaults)
=============  =======================  =================  ==========================
``reverse``    ``"qwhzk…"`` (a–z)       the source         ``min_len=20, max_len=30``
                                        reversed
``sort``       ``"90417…"`` (digits)    the digits sorted  ``min_len=5, max_len=15``
``dates``      ``"3rd of March 2021"``  ``"2021-03-03"``   none
``addition``   ``"123+45"``             ``"168"``          ``max_digits=3``
=============  =======================  =================  ==========================

Lengths are uniform in ``[min_len, max_len]``, letters and digits uniform. Addition
operands are uniform integers in ``[0, 10**max_digits)``. All tasks use character
tokens.

**Dates** are uniform over the days from 1950-01-01 to 2049-12-31, each written in
one of ``DATE_FORMATS`` (chosen uniformly) with fixed English month and weekday
names (never the locale's). The formats are unambiguous together: slashes are
month/day/year unless the first field has four digits (year/month/day), dots are
day.month.year, and a two-digit year ``yy`` means 19yy for 50–99 and 20yy for
00–49 (the range covered).

``make_task`` draws pairs independently, so two calls may share pairs;
``make_splits`` gives train / validation / test parts with no source in two parts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TASKS = ("reverse", "sort", "dates", "addition")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_OPTIONS = {
    "reverse": {"min_len": 20, "max_len": 30},
    "sort": {"min_len": 5, "max_len": 15},
    "dates": {},
    "addition": {"max_digits": 3},
}
_MAX_DIGITS = 18  # operands and sums stay inside int64


def _ordinal(day: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` … ``11th``, ``12th``, ``13th`` … ``21st`` …"""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _two(n: int) -> str:
    return f"{n:02d}"


def _parts(d: dt.date) -> dict[str, str]:
    month = MONTHS[d.month - 1]
    weekday = WEEKDAYS[d.weekday()]
    return {
        "d": str(d.day),
        "dd": _two(d.day),
        "m": str(d.month),
        "mm": _two(d.month),
        "Y": str(d.year),
        "yy": _two(d.year % 100),
        "Month": month,
        "Mon": month[:3],
        "Weekday": weekday,
        "Wkd": weekday[:3],
        "dth": _ordinal(d.day),
    }


# name -> template over _parts' fields, and how the result is cased.
_DATE_TEMPLATES: dict[str, tuple[str, str]] = {
    "d Month Y": ("{d} {Month} {Y}", "as is"),  # 3 March 2021
    "Month d, Y": ("{Month} {d}, {Y}", "as is"),  # March 3, 2021
    "Mon d Y": ("{Mon} {d} {Y}", "as is"),  # Mar 3 2021
    "mm/dd/Y": ("{mm}/{dd}/{Y}", "as is"),  # 03/03/2021
    "m/d/yy": ("{m}/{d}/{yy}", "as is"),  # 3/3/21
    "d.m.Y": ("{d}.{m}.{Y}", "as is"),  # 3.3.2021
    "dd.mm.yy": ("{dd}.{mm}.{yy}", "as is"),  # 03.03.21
    "Y/mm/dd": ("{Y}/{mm}/{dd}", "as is"),  # 2021/03/03
    "Ymmdd": ("{Y}{mm}{dd}", "as is"),  # 20210303
    "Weekday, Month d, Y": ("{Weekday}, {Month} {d}, {Y}", "as is"),  # Wednesday, March 3, 2021
    "dth of Month Y": ("{dth} of {Month} {Y}", "as is"),  # 3rd of March 2021
    "dd-Mon-yy": ("{dd}-{Mon}-{yy}", "as is"),  # 03-Mar-21
    "MONTH d, Y": ("{Month} {d}, {Y}", "upper"),  # MARCH 3, 2021
    "d mon Y": ("{d} {Mon} {Y}", "lower"),  # 3 mar 2021
    "Wkd d Mon Y": ("{Wkd} {d} {Mon} {Y}", "as is"),  # Wed 3 Mar 2021
}
DATE_FORMATS = tuple(_DATE_TEMPLATES)


def render_date(date: dt.date, fmt: str) -> str:
    """``date`` written in the format named ``fmt`` (one of ``DATE_FORMATS``)."""
    if fmt not in _DATE_TEMPLATES:
        raise ValueError(f"unknown date format {fmt!r}; choose one of {', '.join(DATE_FORMATS)}")
    template, case = _DATE_TEMPLATES[fmt]
    text = template.format(**_parts(date))
    return {"upper": text.upper(), "lower": text.lower()}.get(case, text)


def _date_span() -> int:
    return (LAST_DATE - FIRST_DATE).days + 1


# ------------------------------------------------------------------------- drawing


def _draw_reverse(rng: np.random.Generator, min_len: int, max_len: int) -> tuple[str, str]:
    length = int(rng.integers(min_len, max_len + 1))
    source = "".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), size=length))
    return source, source[::-1]


def _draw_sort(rng: np.random.Generator, min_len: int, max_len: int) -> tuple[str, str]:
    length = int(rng.integers(min_len, max_len + 1))
    source = "".join(DIGITS[i] for i in rng.integers(0, len(DIGITS), size=length))
    return source, "".join(sorted(source))


def _draw_dates(rng: np.random.Generator) -> tuple[str, str]:
    date = FIRST_DATE + dt.timedelta(days=int(rng.integers(0, _date_span())))
    fmt = DATE_FORMATS[int(rng.integers(0, len(DATE_FORMATS)))]
    return render_date(date, fmt), date.isoformat()


def _draw_addition(rng: np.random.Generator, max_digits: int) -> tuple[str, str]:
    a, b = (int(v) for v in rng.integers(0, 10**max_digits, size=2))
    return f"{a}+{b}", str(a + b)


_DRAW: dict[str, Callable[..., tuple[str, str]]] = {
    "reverse": _draw_reverse,
    "sort": _draw_sort,
    "dates": _draw_dates,
    "addition": _draw_addition,
}


def _check_name(name: object) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown seq2seq task {name!r}; choose one of {', '.join(TASKS)}")
    return name  # type: ignore[return-value]


def _options(name: str, given: dict[str, object]) -> dict[str, int]:
    """The task's options with ``given`` applied, checked (one-line errors)."""
    defaults = _OPTIONS[_check_name(name)]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) if defaults else "none"
        raise ValueError(f"task {name!r} has no option {unknown[0]!r}; its options: {allowed}")
    options = {**defaults, **given}
    for key, value in options.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} of task {name!r} must be a positive integer, got {value!r}")
    if "max_len" in options and options["max_len"] < options["min_len"]:
        raise ValueError(
            f"max_len ({options['max_len']}) of task {name!r} is below min_len "
            f"({options['min_len']})"
        )
    if options.get("max_digits", 1) > _MAX_DIGITS:
        raise ValueError(f"max_digits must be at most {_MAX_DIGITS}, got {options['max_digits']}")
    return {key: int(value) for key, value in options.items()}


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


# -------------------------------------------------------------------------- public


@dataclass(frozen=True)
class TaskSettings:
    """What a built-in task suggests: token kind, longest source and target, sizes."""

    name: str
    kind: str  # "char": every task is character-level
    max_source_length: int  # tokens, the longest source the task can draw
    max_target_length: int  # tokens, without </s>: a decoding length limit
    train_size: int
    val_size: int
    test_size: int
    description: str


def task_settings(name: str, **options: int) -> TaskSettings:
    """The suggested settings of task ``name`` with ``options`` (see the module table)."""
    options = _options(name, options)
    if name in ("reverse", "sort"):
        src = tgt = options["max_len"]
        what = "letters reversed" if name == "reverse" else "digits sorted"
        description = f"{options['min_len']}-{options['max_len']} {what}"
    elif name == "dates":
        # The longest weekday and month name, and a two-digit day, make the longest text.
        longest = dt.date(2021, 9, 29)  # a Wednesday in September
        src = max(len(render_date(longest, fmt)) for fmt in DATE_FORMATS)
        tgt = len("YYYY-MM-DD")
        description = f"dates in {len(DATE_FORMATS)} formats to ISO 8601"
    else:
        digits = options["max_digits"]
        src, tgt = 2 * digits + 1, digits + 1
        description = f"sums of two integers of up to {digits} digits"
    return TaskSettings(
        name=name,
        kind="char",
        max_source_length=src,
        max_target_length=tgt,
        train_size=20_000,
        val_size=1_000,
        test_size=1_000,
        description=description,
    )


def make_task(name: str, n: int, *, seed: int, **options: int) -> list[tuple[str, str]]:
    """``n`` ``(source, target)`` pairs of task ``name``, drawn independently from ``seed``."""
    options = _options(name, options)
    n = _check_count("n", n)
    rng = np.random.default_rng(seed)
    draw = _DRAW[name]
    return [draw(rng, **options) for _ in range(n)]


def make_splits(
    name: str, n_train: int, n_val: int, n_test: int, seed: int, **options: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, val, test)`` pairs of task ``name`` with every source distinct.

    Pairs are drawn from ``seed`` and kept at their source's first appearance: the
    first ``n_test`` distinct ones are the test part, the next ``n_val`` validation,
    the rest training. So the test and validation parts do not change when only
    ``n_train`` does. Too small a task space (e.g. ``addition`` with
    ``max_digits=1`` has 100 sources) is a ValueError.
    """
    options = _options(name, options)
    sizes = {"n_test": n_test, "n_val": n_val, "n_train": n_train}
    counts = [_check_count(key, value) for key, value in sizes.items()]
    total = sum(counts)
    if counts[2] < 1:
        raise ValueError(f"n_train must be at least 1, got {n_train}")
    rng = np.random.default_rng(seed)
    draw = _DRAW[name]
    seen: dict[str, str] = {}  # source -> target, in order of first appearance
    tries = 0
    budget = 20 * total + 1000  # a task space ~2x the request fills well within this
    while len(seen) < total:
        if tries == budget:
            raise ValueError(
                f"task {name!r} gave only {len(seen)} distinct sources in {budget} draws, "
                f"fewer than the {total} asked; ask for fewer pairs or widen its options"
            )
        source, target = draw(rng, **options)
        seen.setdefault(source, target)
        tries += 1
    pairs = list(seen.items())
    test, val = pairs[: counts[0]], pairs[counts[0] : counts[0] + counts[1]]
    return pairs[counts[0] + counts[1] :], val, test
