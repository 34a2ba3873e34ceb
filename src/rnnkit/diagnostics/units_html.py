"""One self-contained HTML page that colours a text by a hidden unit's activation.

Each token's background goes from blue (−1) through white (0) to red (+1): with
``v = clip(a, -1, 1)`` and ``w = round(255 (1 - |v|))`` the colour is ``rgb(255, w, w)``
for ``v >= 0`` and ``rgb(w, w, 255)`` below (tanh's range; cell states beyond ±1
saturate). A selector switches between the listed units and a number input reaches any
unit of the layer (all of them are embedded); ``#unit=N`` in the address opens unit N.
Hovering a token shows its activation and the model's top next-token predictions.

The page has inline CSS and JavaScript only and loads nothing. The text is escaped
(``<``, ``&`` and quotes as entities, newlines as line breaks with a faint ``↵``, tabs and
runs of spaces kept by ``white-space: pre-wrap``, other control characters shown as
their Unicode control pictures), and the data sits in a ``<script type="application/json">``
block with ``<``, ``>`` and ``&`` written as ``\\u`` escapes, so no text can close it.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_text
from rnnkit.diagnostics.units import UnitRecord

DECIMALS = 3  # activations are embedded rounded to this many decimals
PROB_DECIMALS = 5
DARK = 110  # below this whiteness letters turn white


def unit_color(value: float) -> str:
    """The CSS background of an activation (the page's JavaScript computes the same)."""
    w = _whiteness(value)
    return f"rgb(255, {w}, {w})" if value >= 0 else f"rgb({w}, {w}, 255)"


def _whiteness(value: float) -> int:
    """``w = round(255 (1 - |clip(value, -1, 1)|))``: 255 at 0, 0 at ±1."""
    v = min(1.0, max(-1.0, float(value)))
    return math.floor(255 * (1 - abs(v)) + 0.5)  # Math.round in the page


def _span_style(value: float) -> str:
    """Background, and white letters where the background is dark (|value| > 0.57)."""
    light = "; color: #fff" if _whiteness(value) < DARK else ""
    return f"background: {unit_color(value)}{light}"


def unit_html(
    record: UnitRecord,
    unit: int,
    *,
    units: Iterable[int] = (),
    labels: Mapping[int, str] | None = None,
    title: str | None = None,
) -> str:
    """The page for ``record``, opened on ``unit``; ``units`` are listed in the selector too.

    ``labels`` maps a unit to a note shown beside it in the selector (e.g. what it tracks).
    """
    start = record.check_unit(unit)
    listed = [start] + [u for u in (record.check_unit(v) for v in units) if u != start]
    listed = list(dict.fromkeys(listed))  # keep the order, drop repeats
    labels = {record.check_unit(u): str(text) for u, text in (labels or {}).items()}
    if title is None:
        title = f"{record.cell} layer {record.layer}: {record.kind} units"
    acts = np.round(record.activations.astype(np.float64), DECIMALS)  # (T, H)
    data = {
        "tokens": record.tokens,
        "acts": acts.T.tolist(),  # (H, T): one list per unit
        "top": record.top_ids.tolist(),  # (T, k)
        "probs": np.round(record.top_probs, PROB_DECIMALS).tolist(),  # (T, k)
        "vocab": record.vocab_tokens,
        "listed": listed,
        "labels": {str(u): labels[u] for u in sorted(labels)},
        "start": start,
        "kind": record.kind,
        "dark": DARK,
    }
    options = "".join(
        f'<option value="{u}"{" selected" if u == start else ""}>'
        f"{html.escape(_option_text(u, labels))}</option>"
        for u in listed
    )
    return _PAGE.format(
        title=html.escape(_displayable(title)),
        subtitle=html.escape(
            f"{record.num_tokens} {record.vocab_kind} tokens · layer {record.layer} "
            f"({record.cell}) · {record.num_units} units · {record.kind}_t"
        ),
        options=options,
        max_unit=record.num_units - 1,
        start=start,
        text=_text_html(record, acts[:, start]),
        data=_script_json(data),
        css=_CSS,
        js=_JS,
    )


def write_unit_html(
    path: str | os.PathLike[str],
    record: UnitRecord,
    units: Iterable[int],
    *,
    labels: Mapping[int, str] | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`unit_html` for ``units`` (opened on the first) to ``path``, atomically."""
    units = list(units)
    if not units:
        raise ValueError("write_unit_html needs at least one unit to show; pass units=[...]")
    page = unit_html(record, units[0], units=units[1:], labels=labels, title=title)
    atomic_write_text(path, page)
    return Path(path)


def _option_text(unit: int, labels: Mapping[int, str]) -> str:
    note = labels.get(unit)
    return f"unit {unit}" + (f" — {_displayable(note)}" if note else "")


def _text_html(record: UnitRecord, values: np.ndarray) -> str:
    """The text as escaped HTML, each token a coloured ``span.t`` carrying its index."""
    pieces, position = [], 0
    for t, (start, end) in enumerate(record.spans.tolist()):
        if start > position:  # whitespace between word tokens: shown, not coloured
            pieces.append(_escape(record.text[position:start]))
        token = record.text[start:end]
        extra = " nl" if token == "\n" else ""
        if len(token) == 1 and _is_control(token):
            extra = " ctl"
        pieces.append(
            f'<span class="t{extra}" data-i="{t}" style="{_span_style(values[t])}">'
            f"{_escape(token)}</span>"
        )
        position = end
    pieces.append(_escape(record.text[position:]))
    return "".join(pieces)


def _is_control(char: str) -> bool:
    code = ord(char)
    return (code < 0x20 and char not in "\n\t") or code == 0x7F


def _escape(text: str) -> str:
    """HTML for a piece of text: entities, control pictures, U+FFFD for lone surrogates."""
    chars = []
    for char in _displayable(text):
        if _is_control(char):
            char = "\u2421" if char == "\x7f" else chr(0x2400 + ord(char))  # ␀ … ␟, ␡
        chars.append(char)
    return html.escape("".join(chars), quote=True)


def _displayable(text: str) -> str:
    """``text`` with lone surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    if not _has_surrogates(text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _script_json(data: dict) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` characters."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
.sub { color: #666; margin-bottom: .8em; }
.controls { display: flex; gap: 1.2em; align-items: center; flex-wrap: wrap;
  margin-bottom: 1em; }
.legend { display: inline-flex; align-items: center; gap: .4em; font-size: .85em; }
.bar { width: 160px; height: 12px; border: 1px solid #aaa;
  background: linear-gradient(to right, rgb(0,0,255), rgb(255,255,255), rgb(255,0,0)); }
#unit-input:invalid { background: #fdd; }
#info { color: #444; font-size: .9em; }
#text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 14px;
  line-height: 1.5; white-space: pre-wrap; tab-size: 4; word-break: break-all;
  border: 1px solid #ddd; padding: .8em; }
#text .t { cursor: default; }
#text .t:hover { outline: 1px solid #000; }
#text .nl::before { content: "\\21B5"; opacity: .35; }
#text .ctl { opacity: .7; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888;
  box-shadow: 2px 2px 6px rgba(0,0,0,.25); padding: .4em .6em; font-size: 13px;
  pointer-events: none; z-index: 10; }
#tip table { border-collapse: collapse; margin-top: .3em; }
#tip td { padding: 0 .5em 0 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
#tip tr.next td { font-weight: bold; }
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("unit-data").textContent);
  var spans = document.querySelectorAll("#text .t");
  var select = document.getElementById("unit-select");
  var input = document.getElementById("unit-input");
  var info = document.getElementById("info");
  var tip = document.getElementById("tip");
  var current = data.start;
  var DARK = data.dark;

  function whiteness(v) {  // w = round(255 (1 - |clip(v, -1, 1)|))
    return Math.round(255 * (1 - Math.abs(Math.max(-1, Math.min(1, v)))));
  }
  function color(v) {
    var w = whiteness(v);
    return v >= 0 ? "rgb(255, " + w + ", " + w + ")" : "rgb(" + w + ", " + w + ", 255)";
  }
  var PICTURES = {"\n": "\u21b5", "\t": "\u21e5", " ": "\u2423", "\x7f": "\u2421"};
  function show(token) {  // a token as the tooltip prints it: whitespace made visible
    return token.replace(/[\x00-\x20\x7f]/g, function (c) {
      return PICTURES[c] || String.fromCharCode(0x2400 + c.charCodeAt(0));
    });
  }
  function setUnit(u) {
    if (!(Number.isInteger(u) && u >= 0 && u < data.acts.length)) { return false; }
    current = u;
    var values = data.acts[u];
    for (var k = 0; k < spans.length; k++) {
      var v = values[+spans[k].dataset.i];
      spans[k].style.backgroundColor = color(v);
      spans[k].style.color = whiteness(v) < DARK ? "#fff" : "";
    }
    var low = Infinity, high = -Infinity, sum = 0;
    for (var t = 0; t < values.length; t++) {
      low = Math.min(low, values[t]); high = Math.max(high, values[t]); sum += values[t];
    }
    var note = data.labels[String(u)];
    info.textContent = "unit " + u + (note ? " (" + note + ")" : "") + ": min " +
      low.toFixed(3) + ", mean " + (sum / values.length).toFixed(3) + ", max " + high.toFixed(3);
    input.value = String(u);
    select.value = data.listed.indexOf(u) >= 0 ? String(u) : "";
    document.body.dataset.unit = String(u);
    return true;
  }
  select.addEventListener("change", function () { setUnit(parseInt(select.value, 10)); });
  input.addEventListener("change", function () { setUnit(Number(input.value)); });
  input.addEventListener("input", function () { setUnit(Number(input.value)); });

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function fillTip(i) {
    while (tip.firstChild) { tip.removeChild(tip.firstChild); }
    var head = document.createElement("div");
    head.textContent = "token " + i + " \u201c" + show(data.tokens[i]) + "\u201d  unit " +
      current + " " + data.kind + " = " + data.acts[current][i].toFixed(3);
    tip.appendChild(head);
    var next = i + 1 < data.tokens.length ? data.tokens[i + 1] : null;
    var caption = document.createElement("div");
    caption.textContent = "next token predictions" +
      (next === null ? "" : " (actual: \u201c" + show(next) + "\u201d)");
    tip.appendChild(caption);
    var table = document.createElement("table");
    for (var k = 0; k < data.top[i].length; k++) {
      var token = data.vocab[data.top[i][k]], p = data.probs[i][k];
      var row = document.createElement("tr");
      row.className = "pred" + (token === next ? " next" : "");
      row.dataset.token = token;
      row.dataset.p = String(p);
      cell(row, show(token));
      cell(row, (100 * p).toFixed(1) + "%");
      table.appendChild(row);
    }
    tip.appendChild(table);
    tip.dataset.i = String(i);
  }
  var box = document.getElementById("text");
  box.addEventListener("mouseover", function (e) {
    var span = e.target.closest ? e.target.closest(".t") : null;
    if (!span) { tip.style.display = "none"; return; }
    fillTip(+span.dataset.i);
    tip.style.display = "block";
    var x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 4);
    var y = e.clientY + 18;
    if (y + tip.offsetHeight > window.innerHeight) { y = e.clientY - tip.offsetHeight - 8; }
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = Math.max(0, y) + "px";
  });
  box.addEventListener("mouseleave", function () { tip.style.display = "none"; });

  var wanted = /(?:^#|&)unit=(\d+)/.exec(window.location.hash);
  if (!(wanted && setUnit(parseInt(wanted[1], 10)))) { setUnit(current); }
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<div class="sub">{subtitle}</div>
<div class="controls">
<label>unit <select id="unit-select">{options}<option value="">other…</option></select></label>
<label>any unit <input id="unit-input" type="number" min="0" max="{max_unit}" step="1"
  value="{start}"></label>
<span class="legend">−1 <span class="bar"></span> +1</span>
<span id="info"></span>
</div>
<div id="text">{text}</div>
<div id="tip"></div>
<script type="application/json" id="unit-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
