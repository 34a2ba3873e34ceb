"""Placeholder until the LSTM family lands."""


def supports(cell) -> bool:
    return False


def run(cell, x, state, valid, mask):
    raise NotImplementedError
