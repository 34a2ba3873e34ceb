"""The README's example runs as written; the synthetic adding problem is what it says."""

import re
from pathlib import Path

import torch

from rnnkit.data import adding_problem

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md should carry a Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_adding_batch_marks_two_steps_and_sums_them():
    g = torch.Generator().manual_seed(3)
    x, target = adding_problem(50, 20, g)
    marker = x[..., 1]
    assert torch.equal(marker.sum(0), torch.full((50,), 2.0))
    # one mark in each half of the sequence
    assert torch.equal(marker[:10].sum(0), torch.ones(50))
    expected = torch.stack([x[marker[:, b] == 1, b, 0].sum() for b in range(50)])
    assert torch.allclose(target, expected)
