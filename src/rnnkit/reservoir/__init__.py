"""Reservoir computing: echo state networks with fixed random reservoirs and trained readouts.

- ``reservoir.py`` — :class:`Reservoir`, a leaky-integrator reservoir with fixed
  sparse weights (spectral radius set exactly); its time loop runs compiled
  (``kernels.py``, numba) or in torch.
- ``ridge.py`` — :class:`Ridge` (closed form from streamed statistics) and
  :class:`RLS` (recursive least squares / FORCE).
- ``esn.py`` — :class:`EchoStateNetwork`: reservoirs (deep, with feedback) plus a
  ridge readout; fit / predict / generate / save / load.
- ``metrics.py`` — :func:`nrmse`.
"""

from rnnkit.reservoir.esn import EchoStateNetwork
from rnnkit.reservoir.metrics import nrmse
from rnnkit.reservoir.reservoir import Reservoir
from rnnkit.reservoir.ridge import RLS, Ridge

# Datasets (datasets.py) and hyperparameter search (search.py) are exported here too.

__all__ = ["RLS", "EchoStateNetwork", "Reservoir", "Ridge", "nrmse"]
