"""Numeric columns of a CSV file, read with the standard library, and results written back.

The first row is the header. Only the columns asked for are parsed, so other
columns may hold anything (dates, labels).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_open_text


def read_columns(path: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """``{name: float64 array}`` for each named column of the CSV file at ``path``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such CSV file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; give a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise ValueError(f"{path} is empty; it needs a header row and data rows")
            header = [h.strip() for h in header]
            missing = [n for n in names if n not in header]
            if missing:
                shown = ", ".join(h if h.isprintable() else repr(h) for h in header)
                raise ValueError(f"{path} has no column {missing[0]!r}; its columns are: {shown}")
            where = {n: header.index(n) for n in names}
            values: dict[str, list[float]] = {n: [] for n in names}
            for line, row in enumerate(rows, start=2):
                if not any(cell.strip() for cell in row):
                    continue  # blank lines (a trailing newline too) are not data
                if len(row) < len(header):  # its values would sit under the wrong names
                    raise ValueError(
                        f"{path} line {line} has {len(row)} fields but the header has "
                        f"{len(header)}; give every row a value per column"
                    )
                for name, col in where.items():
                    values[name].append(_number(row, col, name, path, line))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as err:
        raise ValueError(f"{path} is not valid CSV: {err}") from None
    return {n: np.asarray(v, dtype=np.float64) for n, v in values.items()}


def _number(row: list[str], col: int, name: str, path: Path, line: int) -> float:
    cell = row[col].strip() if col < len(row) else ""
    try:
        value = float(cell)
    except ValueError:
        shown = repr(cell) if cell else "an empty cell"
        raise ValueError(f"{path} line {line}, column {name!r}: {shown} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}, column {name!r}: {cell!r} is not a finite number")
    return value


def write_columns(path: str | Path, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length columns as a CSV with a header, atomically.

    Floats are written with ``repr``, which reads back to the same float exactly.
    """
    names = list(columns)
    with atomic_open_text(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in zip(*(columns[n].tolist() for n in names), strict=True):
            writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
