"""Benchmarks shipped with rnnkit (``rnnkit bench ...``).

:mod:`rnnkit.bench.speed`: forward+backward time of one training step for every cell
kind, torch.nn and a hand-written cell loop next to rnnkit's engines.
"""
