"""The built-in corpus: Python's own standard library source, as in char-rnn's code example.

Nothing is downloaded: the corpus is this fixed list of 30 pure-Python modules, read
from the running interpreter's standard library (``sysconfig.get_paths()["stdlib"]``).
Every file exists as a plain module in CPython 3.10 to 3.13 (no module that became a
package, such as ``pathlib`` or ``zipfile``, and none removed in 3.13); together they
are about 1.26 MB (3.10) to 1.41 MB (3.13)::

    argparse.py          ast.py               calendar.py
    collections/__init__.py                   configparser.py
    contextlib.py        copy.py              csv.py
    dataclasses.py       difflib.py           enum.py
    fractions.py         functools.py         heapq.py
    inspect.py           json/decoder.py      json/encoder.py
    logging/__init__.py  pprint.py            queue.py
    random.py            shlex.py             shutil.py
    statistics.py        string.py            tempfile.py
    textwrap.py          threading.py         tokenize.py
    typing.py

The exact text therefore depends on the Python version; files missing from a trimmed
installation are skipped, as long as at least half are present.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from rnnkit.atomic import atomic_open_text
from rnnkit.data.text import read_text_chunks

BUILTIN_CORPUS_NAME = "python-stdlib"

BUILTIN_CORPUS_FILES: tuple[str, ...] = (
    "argparse.py",
    "ast.py",
    "calendar.py",
    "collections/__init__.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "json/decoder.py",
    "json/encoder.py",
    "logging/__init__.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "shlex.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "tempfile.py",
    "textwrap.py",
    "threading.py",
    "tokenize.py",
    "typing.py",
)


def builtin_corpus_files() -> list[Path]:
    """The corpus files present in this interpreter's standard library, in list order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = [stdlib / name for name in BUILTIN_CORPUS_FILES if (stdlib / name).is_file()]
    if 2 * len(found) < len(BUILTIN_CORPUS_FILES):
        raise ValueError(
            f"only {len(found)} of the {len(BUILTIN_CORPUS_FILES)} built-in corpus files were "
            f"found under {stdlib}; give a text file of your own instead"
        )
    return found


def write_builtin_corpus(path: str | os.PathLike[str]) -> Path:
    """Write the built-in corpus to ``path`` (atomically) and return the path.

    Each file is preceded by a header line such as ``# ---- json/decoder.py ----``
    and ends with a newline.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with atomic_open_text(path) as out:
        for source in builtin_corpus_files():
            out.write(f"# ---- {source.relative_to(stdlib).as_posix()} ----\n")
            last = ""
            for chunk in read_text_chunks(source):
                out.write(chunk)
                last = chunk[-1]
            if last != "\n":
                out.write("\n")
    return Path(path)
