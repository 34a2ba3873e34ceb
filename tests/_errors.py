"""Shared checks that a mistake gives one line: a ValueError, or the CLI's exit code 2."""

from __future__ import annotations

import pytest

from rnnkit.cli.main import main


def one_line_error(call, *needles: str) -> str:
    """``call()`` raises a one-line ValueError holding every needle; its message."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def assert_usage_error(capsys, argv, *needles) -> str:
    """``rnnkit argv`` exits 2 with one ``rnnkit: error:`` line holding every needle."""
    capsys.readouterr()  # what earlier calls printed
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    err = captured.err.strip()
    assert err.startswith("rnnkit: error: ") and "\n" not in err, err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in err, (needle, err)
    return err
