"""Diagnostics: seeing vanishing and exploding gradients through time in a model.

``gradient_flow(model, inputs, targets=None, loss=None)`` runs a model's recurrence step
by step and measures ``‖∂L_t/∂s_k‖`` for every pair of steps, the one-step Jacobian norms
along the trajectory and the recurrent weight's spectrum; the returned
:class:`GradientFlow` gives a verdict (``"vanishing"`` / ``"exploding"`` / ``"healthy"``),
a text ``summary()`` and PNG views (``plot``, ``heatmap``).

``record_activations(model, vocab, text)`` records a language model's hidden units over
a text, ``find_units`` ranks units by how well they track a feature of the text (quotes,
line position, bracket depth, ...), and ``write_unit_html`` writes one self-contained page
that colours the text by a unit's activation.
"""

from rnnkit.diagnostics.decay import EXPLODING_FACTOR, VANISHING_FACTOR, DecayFit, fit_decay
from rnnkit.diagnostics.features import FEATURES, text_feature
from rnnkit.diagnostics.gradient_flow import gradient_flow
from rnnkit.diagnostics.result import GradientFlow
from rnnkit.diagnostics.spectra import GAMMAS, Spectrum, recurrent_spectrum
from rnnkit.diagnostics.units import UnitRecord, feature_values, find_units, record_activations
from rnnkit.diagnostics.units_html import unit_color, unit_html, write_unit_html

__all__ = [
    "EXPLODING_FACTOR",
    "FEATURES",
    "GAMMAS",
    "VANISHING_FACTOR",
    "DecayFit",
    "GradientFlow",
    "Spectrum",
    "UnitRecord",
    "feature_values",
    "find_units",
    "fit_decay",
    "gradient_flow",
    "record_activations",
    "recurrent_spectrum",
    "text_feature",
    "unit_color",
    "unit_html",
    "write_unit_html",
]
