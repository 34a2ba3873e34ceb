r"""The files of ``rnnkit diagnose``: four PNG views, ``diagnose.json`` and one HTML report.

:func:`write_diagnosis` writes, atomically, into one directory:

- ``gradient_lag.png``, ``jacobians.png``, ``spectrum.png``: one panel each of
  :mod:`rnnkit.diagnostics.plot` (the panels ``GradientFlow.plot`` puts in one figure);
- ``heatmap.png`` when every ``(t, k)`` pair was measured;
- ``diagnose.json``: :meth:`GradientFlow.to_dict` (NaN and inf written as ``null``) with
  the source and settings under ``"diagnose"``;
- ``report.html``: one self-contained page (inline CSS, the PNGs as base64 data URIs,
  nothing fetched): the verdict, the numbers behind it, what it means and what to try,
  the model's settings and the plots.

Numbers are printed as :meth:`GradientFlow.summary` prints them: 4 significant digits
(:func:`number`), ``n/a`` for a quantity that does not apply.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_bytes, atomic_write_text
from rnnkit.diagnostics.decay import EXPLODING_FACTOR, VANISHING_FACTOR
from rnnkit.diagnostics.plot import (
    draw_jacobians,
    draw_lag,
    draw_spectrum,
    figure,
    heatmap_png,
    number,
    png,
    spectrum_panels,
)
from rnnkit.diagnostics.result import GradientFlow

PLOTS = ("gradient_lag.png", "jacobians.png", "spectrum.png", "heatmap.png")
COLORS = {"vanishing": "#1f5fbf", "exploding": "#c0392b", "healthy": "#1e8449"}


# ---- the plots: one panel a PNG, drawn by rnnkit.diagnostics.plot -----------------------


def lag_png(flow: GradientFlow) -> bytes:
    """:func:`~rnnkit.diagnostics.plot.draw_lag` alone."""
    fig = figure(7, 4.5)
    draw_lag(fig.add_subplot(), flow)
    return png(fig)


def jacobians_png(flow: GradientFlow) -> bytes:
    """:func:`~rnnkit.diagnostics.plot.draw_jacobians` alone."""
    fig = figure(7, 4.5)
    draw_jacobians(fig.add_subplot(), flow)
    return png(fig)


def spectrum_png(flow: GradientFlow) -> bytes:
    """:func:`~rnnkit.diagnostics.plot.draw_spectrum` alone: one or two panels side by side."""
    n = spectrum_panels(flow)
    fig = figure(11 if n == 2 else 7, 4.5)
    grid = fig.add_gridspec(1, n)
    draw_spectrum(fig, [grid[i] for i in range(n)], flow)
    return png(fig)


# ---- what the verdict means -----------------------------------------------------------


def advice(flow: GradientFlow) -> tuple[str, list[str]]:
    """A plain-language reading of the verdict, and what to try."""
    fit, T = flow.fit, flow.steps
    if flow.verdict == "vanishing":
        meaning = (
            f"The gradient of the last step's loss shrinks by a factor of about "
            f"{number(fit.rate)} for every step it travels back, {number(fit.factor)} over "
            f"{fit.span} steps of the {T}. Inputs far back barely change the weights: the "
            f"model cannot learn dependencies that long."
        )
        if flow.spectral_radius * flow.gamma < 1:  # False for NaN
            meaning += (
                f" W_rec's spectral radius times γ is {number(flow.spectral_radius * flow.gamma)}"
                f" < 1, so long products of the Jacobians diag(f') W_rec shrink even where one "
                f"step's norm is above 1."
            )
        tries = [
            "a gated cell: --cell lstm or --cell gru (the cell / update path carries the "
            "gradient almost unchanged; a larger LSTM forget bias keeps it open longer)",
            "leaky units (--cell leaky): slow time scales decay as α^lag, not (λ₁γ)^lag",
            "identity initialisation with ReLU (--cell irnn): the Jacobian starts near I",
        ]
        if math.isfinite(flow.bound) and flow.bound < 1:
            tries.append(
                f"here λ₁γ = {number(flow.bound)} < 1 guarantees the decay: a tanh / sigmoid "
                f"Elman cell needs a larger recurrent weight to keep the gradient"
            )
    elif flow.verdict == "exploding":
        meaning = (
            f"The gradient grows by a factor of about {number(fit.rate)} for every step back, "
            f"{number(fit.factor)} over {fit.span} steps of the {T}"
            + (" (some norms overflowed)" if fit.nonfinite else "")
            + ". One long sequence can then throw the weights far off: training diverges "
            "or turns to NaN."
        )
        tries = [
            "gradient clipping by norm (--clip-norm 1 to 5; clipping rescales the whole "
            "gradient when its norm passes the threshold)",
            "a smaller learning rate",
            "a smaller recurrent weight: spectral radius below 1/γ, or an orthogonal init",
            "a gated cell (--cell lstm / gru), whose gates saturate instead of amplifying",
        ]
    else:
        meaning = (
            f"Over {fit.span} steps of the {T} the gradient changes by {number(fit.factor)} (about "
            f"{number(fit.rate)} per step): it neither dies out nor blows up, so the model can "
            f"learn from the whole sequence (factors between {VANISHING_FACTOR:g} and "
            f"{EXPLODING_FACTOR:g} count as healthy)."
        )
        tries = [
            "nothing needs fixing at this length; the verdict is about these T steps, so "
            "diagnose again with a larger --steps for longer dependencies",
            "keep gradient clipping on as a safeguard (--clip-norm 5)",
        ]
    return meaning, tries


# ---- the HTML report ------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.source { color: #555; margin-top: 0; }
.verdict { font-size: 3.2em; font-weight: 700; letter-spacing: 0.04em; margin: 0.3em 0 0.1em; }
.headline { font-size: 1.15em; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left;
         vertical-align: top; }
td.num { font-family: ui-monospace, monospace; text-align: right; white-space: nowrap; }
td.note { color: #555; font-size: 0.92em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
"""


def _rows(flow: GradientFlow) -> list[tuple[str, str, str]]:
    """(quantity, value as printed, what it is) for the numbers table."""
    fit = flow.fit
    jac = flow.jacobian_norms[np.isfinite(flow.jacobian_norms)]
    geo = float(np.exp(np.log(jac).mean())) if jac.size and (jac > 0).all() else math.nan
    if 0 < fit.rate < 1:
        pace = f"halves every {number(fit.half_life)} steps"
    elif fit.rate > 1:
        pace = f"doubles every {number(math.log(2) / math.log(fit.rate))} steps"
    else:
        pace = "no trend"
    r = flow.reasons
    return [
        ("decay rate per step", number(fit.rate), f"fitted factor per step back; {pace}"),
        (
            "factor over the sequence",
            number(fit.factor),
            f"rate ** {fit.span}: the change over the fitted lags "
            f"(< {VANISHING_FACTOR:g} vanishing, > {EXPLODING_FACTOR:g} exploding)",
        ),
        ("‖∂L_T/∂h_k‖ at lag 0", number(flow.last_row[-1]), "the last step"),
        (
            f"‖∂L_T/∂h_k‖ at lag {flow.steps - 1}",
            number(flow.last_row[0]),
            "the first step" + ("" if np.isfinite(flow.last_row[0]) else " (overflowed)"),
        ),
        ("spectral radius ρ(W_rec)", number(flow.spectral_radius), r.get("spectral_radius", "")),
        (
            "λ₁ (largest singular value)",
            number(flow.max_singular_value),
            r.get("max_singular_value", ""),
        ),
        ("γ (bound of |f′|)", number(flow.gamma), r.get("gamma", "")),
        ("bound on ‖∂h_(j+1)/∂h_j‖", number(flow.bound), r.get("bound", "λ₁γ for an Elman cell")),
        (
            "‖∂h_(j+1)/∂h_j‖ mean / max / geometric mean",
            " / ".join(number(v) for v in (_mean(jac), _max(jac), geo)),
            f"along sequence {flow.batch_index}",
        ),
    ]


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else math.nan


def _max(a: np.ndarray) -> float:
    return float(a.max()) if a.size else math.nan


def _table(rows, numeric: bool = True) -> str:
    """Rows of (name, value) or (name, value, note) as an HTML table, all text escaped."""
    cls = ' class="num"' if numeric else ""
    body = []
    for name, value, *note in rows:
        cells = f"<th>{html.escape(str(name))}</th><td{cls}>{html.escape(str(value))}</td>"
        if note:
            cells += f'<td class="note">{html.escape(str(note[0]))}</td>'
        body.append(f"<tr>{cells}</tr>")
    return "<table>" + "".join(body) + "</table>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_html(
    flow: GradientFlow,
    images: Mapping[str, bytes],
    *,
    source: Mapping[str, object] | None = None,
    settings: Mapping[str, object] | None = None,
    title: str = "Gradient flow through time",
) -> str:
    """The self-contained report page; ``images`` maps a PNG's name to its bytes."""
    fit, verdict = flow.fit, flow.verdict
    meaning, tries = advice(flow)
    color = COLORS.get(verdict, "#222")
    source_line = ", ".join(f"{k}: {v}" for k, v in (source or {}).items())
    analysis = [
        ("cell", flow.cell),
        ("layer", f"{flow.layer} ({flow.direction})"),
        ("steps T", flow.steps),
        ("batch B", flow.batch_size),
        ("state size", flow.state_size),
        ("loss", flow.loss),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}: {verdict}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="source">{html.escape(source_line)}</p>' if source_line else "",
        f'<div class="verdict" style="color: {color}">{verdict}</div>',
        f'<p class="headline">‖∂L_T/∂h_k‖ changes by ×{number(fit.rate)} per step back, '
        f"×{number(fit.factor)} over {fit.span} steps (T = {flow.steps}).</p>",
        "<h2>The numbers</h2>",
        _table(_rows(flow)),
        "<h2>What it means</h2>",
        f"<p>{html.escape(meaning)}</p>",
        "<h2>What to try</h2>" if verdict != "healthy" else "<h2>Next</h2>",
        "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in tries) + "</ul>",
        "<h2>Plots</h2>",
    ]
    for name in PLOTS:
        if name in images:
            alt = name.removesuffix(".png").replace("_", " ")
            parts.append(f'<p><img alt="{html.escape(alt)}" src="{_data_uri(images[name])}"></p>')
    parts += ["<h2>The analysis</h2>", _table(analysis, numeric=False)]
    if settings:
        parts += ["<h2>Model settings</h2>", _table(list(settings.items()), numeric=False)]
    parts += [
        "<h2>Summary</h2>",
        f"<pre>{html.escape(flow.summary())}</pre>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


# ---- everything at once ---------------------------------------------------------------


def _json_safe(value):
    """NaN and ±inf as None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_diagnosis(
    out: str | Path,
    flow: GradientFlow,
    *,
    source: Mapping[str, object] | None = None,
    settings: Mapping[str, object] | None = None,
    title: str = "Gradient flow through time",
) -> list[Path]:
    """Write the PNGs, ``diagnose.json`` and ``report.html`` into ``out``; return their paths.

    A ``heatmap.png`` left in ``out`` by an earlier diagnosis is removed when this one has
    only the last row (it would describe another model).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot write into {out}: it is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "gradient_lag.png": lag_png(flow),
        "jacobians.png": jacobians_png(flow),
        "spectrum.png": spectrum_png(flow),
    }
    if flow.grad_norms is not None:
        images["heatmap.png"] = heatmap_png(flow)
    else:
        (out / "heatmap.png").unlink(missing_ok=True)
    written = []
    for name, data in images.items():
        atomic_write_bytes(out / name, data)
        written.append(out / name)
    record = flow.to_dict()
    record["diagnose"] = {"source": dict(source or {}), "settings": dict(settings or {})}
    text = json.dumps(_json_safe(record), indent=2, allow_nan=False, default=str)
    atomic_write_text(out / "diagnose.json", text + "\n")
    written.append(out / "diagnose.json")
    page = report_html(flow, images, source=source, settings=settings, title=title)
    atomic_write_text(out / "report.html", page)
    written.append(out / "report.html")
    return written
