"""Diagnostics: seeing vanishing and exploding gradients through time in a model.

``gradient_flow(model, inputs, targets=None, loss=None)`` runs a model's recurrence step
by step and measures ``‖∂L_t/∂s_k‖`` for every pair of steps, the one-step Jacobian norms
along the trajectory and the recurrent weight's spectrum; the returned
:class:`GradientFlow` gives a verdict (``"vanishing"`` / ``"exploding"`` / ``"healthy"``),
a text ``summary()`` and PNG views (``plot``, ``heatmap``).
"""

from rnnkit.diagnostics.decay import EXPLODING_FACTOR, VANISHING_FACTOR, DecayFit, fit_decay
from rnnkit.diagnostics.gradient_flow import gradient_flow
from rnnkit.diagnostics.result import GradientFlow
from rnnkit.diagnostics.spectra import GAMMAS, Spectrum, recurrent_spectrum

__all__ = [
    "EXPLODING_FACTOR",
    "GAMMAS",
    "VANISHING_FACTOR",
    "DecayFit",
    "GradientFlow",
    "Spectrum",
    "fit_decay",
    "gradient_flow",
    "recurrent_spectrum",
]
