"""The built-in classification example: scikit-learn's 8×8 handwritten digits as sequences.

1,797 images of the digits 0-9 (``sklearn.datasets.load_digits``, shipped with
scikit-learn: no download), each pixel an intensity 0..16, scaled here to [0, 1].
An image becomes a sequence in one of two layouts:

- ``"rows"``: 8 steps of 8 features, the image read row by row, top to bottom;
- ``"pixels"``: 64 steps of 1 feature, read pixel by pixel (the "sequential digits"
  task, a small cousin of sequential MNIST: the label depends on all 64 steps).

The split is fixed: stratified by digit with seed ``SPLIT_SEED``, 70 % train (1,258
images), 10 % validation (180) and 20 % test (359), the same for both layouts, so a
run trained on one layout is scored on the very test images it never saw.
"""

from __future__ import annotations

import numpy as np

from rnnkit.data.labeled import LabeledSequences, stratified_split

LAYOUTS = ("rows", "pixels")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
SPLIT_SEED = 0
_MAX_PIXEL = 16.0  # load_digits' intensities are 0..16


def _check_layout(steps: object) -> str:
    if steps not in LAYOUTS:
        raise ValueError(f"unknown digits layout {steps!r}; choose one of {', '.join(LAYOUTS)}")
    return steps  # type: ignore[return-value]


def load_digits_sequences(steps: str = "rows") -> LabeledSequences:
    """All 1,797 digits as sequences in the ``steps`` layout (``"rows"`` or ``"pixels"``)."""
    _check_layout(steps)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError(
            "the digits example needs scikit-learn; pip install 'rnnkit[examples]'"
        ) from None
    bunch = load_digits()
    pixels = (bunch.images / _MAX_PIXEL).astype(np.float32)  # (N, 8, 8), rows of the image
    n = len(pixels)
    values = pixels if steps == "rows" else pixels.reshape(n, 64, 1)  # (N, 8, 8) or (N, 64, 1)
    T = values.shape[1]
    return LabeledSequences(
        values=np.ascontiguousarray(values),
        lengths=np.full(n, T, dtype=np.int64),
        labels=bunch.target.astype(np.int64),
        classes=[str(d) for d in range(10)],
        kind="numeric",
        source=f"the digits example ({steps})",
    )


def digits_splits(
    steps: str = "rows",
) -> tuple[LabeledSequences, LabeledSequences, LabeledSequences]:
    """The fixed ``(train, val, test)`` split of the digits (70/10/20, stratified)."""
    data = load_digits_sequences(steps)
    parts = stratified_split(data.labels, VAL_FRACTION, TEST_FRACTION, seed=SPLIT_SEED)
    return tuple(data.subset(p) for p in parts)  # type: ignore[return-value]
