"""Features of a text, one value per character, for finding the hidden units that track them.

Every feature describes the text **as it stands after reading character t** (what a
model's ``h_t`` can know), so a unit that counts or toggles on a character changes at
that character:

- ``inside_quotes``: 1 from an opening quote up to the character before its closing
  quote, 0 elsewhere (the closing quote reads 0: the quote is closed after it). Quotes
  are ``"`` and ``'``, paired left to right **within one line**; a quote with no partner
  later on its line is left alone, and so is a ``'`` between two word characters (an
  apostrophe, as in ``don't``). Inside a quote the other quote character is text and a
  backslash escapes the next character (``"a\\"b"`` is one quote).
- ``line_position``: characters read since the last newline (``0`` right after ``"\\n"``,
  ``1`` after the first character of a line), divided by its maximum over the text.
- ``bracket_depth``: opening minus closing brackets of ``()[]{}`` read so far, never
  below 0 (a closing bracket with nothing open is ignored); bracket kinds are not matched.
- ``line_start``: 1 on the first character of each line (the text's first character and
  every character after a ``"\\n"``), else 0.
- ``whitespace``: 1 on spaces, tabs, newlines and other whitespace, else 0.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("inside_quotes", "line_position", "bracket_depth", "line_start", "whitespace")
QUOTES = "\"'"
OPENING, CLOSING = "([{", ")]}"


def text_feature(text: str, name: str) -> np.ndarray:
    """The built-in feature ``name`` of ``text``: a float64 array with one value per character."""
    if name not in FEATURES:
        raise ValueError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")
    if not isinstance(text, str):
        raise TypeError(f"text_feature takes a str, got {type(text).__name__}")
    return _BUILDERS[name](text).astype(np.float64)


def inside_quotes(text: str) -> np.ndarray:
    """1 after reading an opening quote and until its closing quote is read (module docstring)."""
    inside = np.zeros(len(text), dtype=np.float64)
    start = 0
    for line in text.split("\n"):
        _mark_quotes(line, inside, start)
        start += len(line) + 1  # + the newline
    return inside


def _mark_quotes(line: str, inside: np.ndarray, offset: int) -> None:
    """Set ``inside[offset + i]`` for the quoted characters of one ``line``."""
    i, n = 0, len(line)
    while i < n:
        quote = line[i]
        if quote in QUOTES and not _is_apostrophe(line, i):
            close = _closing_quote(line, i)
            if close is not None:
                inside[offset + i : offset + close] = 1.0  # the opening quote up to the closing
                i = close + 1
                continue
        i += 1


def _closing_quote(line: str, i: int) -> int | None:
    """Index of the quote that closes the one at ``line[i]``, or None when it stays open."""
    j = i + 1
    while j < len(line):
        if line[j] == "\\":
            j += 2  # an escaped character never closes
            continue
        if line[j] == line[i]:
            return j
        j += 1
    return None


def _is_apostrophe(line: str, i: int) -> bool:
    """A ``'`` between two word characters (``don't``) is not a quote."""
    return (
        line[i] == "'"
        and 0 < i < len(line) - 1
        and (line[i - 1].isalnum() or line[i - 1] == "_")
        and (line[i + 1].isalnum() or line[i + 1] == "_")
    )


def line_position(text: str) -> np.ndarray:
    """Characters read since the last newline, over its maximum (all zeros if that is 0)."""
    count = np.zeros(len(text), dtype=np.float64)
    column = 0
    for t, char in enumerate(text):
        column = 0 if char == "\n" else column + 1
        count[t] = column
    top = count.max(initial=0.0)
    return count / top if top > 0 else count


def bracket_depth(text: str) -> np.ndarray:
    """Open brackets after reading each character (closing with none open is ignored)."""
    depth = np.zeros(len(text), dtype=np.float64)
    level = 0
    for t, char in enumerate(text):
        if char in OPENING:
            level += 1
        elif char in CLOSING and level > 0:
            level -= 1
        depth[t] = level
    return depth


def line_start(text: str) -> np.ndarray:
    """1 on the first character of every line."""
    return np.array(
        [t == 0 or text[t - 1] == "\n" for t in range(len(text))], dtype=np.float64
    ).reshape(len(text))  # (N,) also when empty


def whitespace(text: str) -> np.ndarray:
    """1 on whitespace characters."""
    return np.array([char.isspace() for char in text], dtype=np.float64).reshape(len(text))


_BUILDERS = {
    "inside_quotes": inside_quotes,
    "line_position": line_position,
    "bracket_depth": bracket_depth,
    "line_start": line_start,
    "whitespace": whitespace,
}
