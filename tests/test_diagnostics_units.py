"""Hidden-unit recording, text features, find_units and the unit HTML page (also in Chromium)."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import torch

from rnnkit.data import Vocab
from rnnkit.diagnostics.features import FEATURES, text_feature
from rnnkit.diagnostics.units import feature_values, find_units, record_activations
from rnnkit.diagnostics.units_html import unit_color, unit_html, write_unit_html
from rnnkit.models import LanguageModel, LMConfig

CODE = "def f(a, b):\n    return \"x(y)\" + g([a], {b: 'z'})\n\tif (a):\n        pass\n"
SPECIAL = "if a<b && c>\"d\":\n\tprint('</script>')  # é\x00 <!--\n"


def lstm_model(text: str, *, layers: int = 2, seed: int = 0, kind: str = "char"):
    vocab = Vocab.from_text(text, kind)
    torch.manual_seed(seed)
    config = LMConfig(
        vocab_size=len(vocab),
        cell="lstm",
        hidden_size=12,
        num_layers=layers,
        embedding_size=8,
        dropout=0.3,  # off in eval: the record must not see it
        engine="native",  # torch's LSTM kernel: an independent check of the stepped cell
    )
    return LanguageModel(config), vocab


def token_ids(vocab: Vocab, text: str) -> torch.Tensor:
    return torch.as_tensor(vocab.encode(text), dtype=torch.long)[:, None]  # (T, 1)


# ---- recording ----------------------------------------------------------------------


def test_record_h_matches_full_forward_and_predictions_match_softmax():
    model, vocab = lstm_model(CODE)
    model.train()
    record = record_activations(model, vocab, CODE)
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        ids = token_ids(vocab, CODE)
        y, _ = model.rnn.run(model.embed(ids), None, None)  # (T, 1, H)
        bottom, _ = model.rnn.layers[0].run(model.embed(ids), None, None)
        probs = torch.softmax(model(ids)[0][:, 0].double(), dim=-1)  # (T, V)
    assert record.layer == 1 and record.kind == "h" and record.cell == "LSTMCell"
    assert record.tokens == list(CODE) and record.activations.shape == (len(CODE), 12)
    np.testing.assert_allclose(record.activations, y[:, 0].numpy(), rtol=0, atol=1e-6)
    low = record_activations(model, vocab, CODE, layer=0)
    np.testing.assert_allclose(low.activations, bottom[:, 0].numpy(), rtol=0, atol=1e-6)
    assert np.abs(low.activations - record.activations).max() > 0.05  # a different layer
    top = torch.topk(probs, 5, dim=-1)
    np.testing.assert_array_equal(record.top_ids, top.indices.numpy())
    np.testing.assert_allclose(record.top_probs, top.values.numpy(), rtol=0, atol=1e-6)
    assert (np.diff(record.top_probs, axis=1) <= 0).all()
    first = record.predictions(3)
    assert first[0] == (
        vocab.tokens[int(top.indices[3, 0])],
        pytest.approx(float(top.values[3, 0])),
    )
    wide = record_activations(model, vocab, CODE, top_k=10_000)  # capped at the vocabulary
    assert wide.top_ids.shape == (len(CODE), len(vocab))
    np.testing.assert_allclose(wide.top_probs.sum(axis=1), 1.0, atol=1e-9)


def test_record_cell_state_matches_final_states_of_prefixes():
    model, vocab = lstm_model(CODE)
    record = record_activations(model, vocab, CODE, kind="c", layer=0)
    ids = token_ids(vocab, CODE)
    model.eval()  # the reference runs without dropout too
    with torch.no_grad():
        for t in (0, 7, 30, len(CODE) - 1):
            _, finals = model.rnn.run(model.embed(ids[: t + 1]), None, None)
            _, c = finals[0]  # layer 0's (h, c) after token t
            np.testing.assert_allclose(record.activations[t], c[0].numpy(), rtol=0, atol=1e-6)
    assert np.abs(record.activations).max() > 0.1  # a real signal, not zeros


def test_record_word_vocab_spans_and_per_token_features():
    text = "Hello,  world\n(it's) ok"
    model, vocab = lstm_model(text + " more words", layers=1, kind="word")
    record = record_activations(model, vocab, text)
    assert record.tokens == ["Hello", ",", "world", "\n", "(", "it", "'", "s", ")", "ok"]
    spans = [(0, 5), (5, 6), (8, 13), (13, 14), (14, 15), (15, 17), (17, 18), (18, 19)]
    assert record.spans.tolist() == [list(s) for s in [*spans, (19, 20), (21, 23)]]
    depth = feature_values(record, "bracket_depth")  # at each token's last character
    np.testing.assert_array_equal(depth, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    per_char = np.arange(len(text), dtype=float)
    np.testing.assert_array_equal(
        feature_values(record, per_char), [4, 5, 12, 13, 14, 16, 17, 18, 19, 22]
    )
    page = unit_html(record, 0)
    shown = html.unescape(re.sub(r"<[^>]*>", "", _between(page, '<div id="text">', "</div>")))
    assert shown == text  # the gaps between words are kept, uncoloured
    assert page.count('<span class="t') == 10


def test_record_refuses_what_it_cannot_record():
    model, vocab = lstm_model(CODE)
    with pytest.raises(ValueError, match="out of range: the model has 2"):
        record_activations(model, vocab, CODE, layer=2)
    with pytest.raises(ValueError, match="the vocabulary has 3 tokens but the model reads"):
        record_activations(model, Vocab.from_text("ab"), "ab")
    with pytest.raises(ValueError, match="no tokens"):
        record_activations(model, vocab, "")
    with pytest.raises(ValueError, match="kind='x'"):
        record_activations(model, vocab, CODE, kind="x")
    irnn, v = planted_model(CODE)
    with pytest.raises(ValueError, match="kind='c' needs an LSTM"):
        record_activations(irnn, v, CODE, kind="c")
    record = record_activations(model, vocab, CODE)
    with pytest.raises(ValueError, match="unit 12 is out of range"):
        unit_html(record, 12)


# ---- features -----------------------------------------------------------------------

FEATURE_TEXT = "f(\"a\\\"b\", 'c')\n  x[don't]{\n}"


def test_features_against_hand_computed_values():
    s = FEATURE_TEXT
    assert len(s) == 28 and s[4] == "\\" and s[22] == "'"
    quotes = np.zeros(28)
    quotes[2:7] = 1  # "a\"b": the opening quote up to the closing one (escaped quote inside)
    quotes[10:12] = 1  # 'c'; the apostrophe of don't is no quote
    np.testing.assert_array_equal(text_feature(s, "inside_quotes"), quotes)
    depth = [0, 1] + [1] * 11 + [0] * 5 + [1] * 6 + [0, 1, 1, 0]
    np.testing.assert_array_equal(text_feature(s, "bracket_depth"), depth)
    counts = [*range(1, 15), 0, *range(1, 12), 0, 1]
    np.testing.assert_allclose(text_feature(s, "line_position"), np.array(counts) / 14)
    starts = np.zeros(28)
    starts[[0, 15, 27]] = 1
    np.testing.assert_array_equal(text_feature(s, "line_start"), starts)
    spaces = np.zeros(28)
    spaces[[9, 14, 15, 16, 26]] = 1
    np.testing.assert_array_equal(text_feature(s, "whitespace"), spaces)
    # A quote with no partner on its own line stays text; a stray ")" does not go negative.
    np.testing.assert_array_equal(text_feature('a "b\nc" d', "inside_quotes"), np.zeros(9))
    np.testing.assert_array_equal(text_feature("))(", "bracket_depth"), [0, 0, 1])
    assert set(FEATURES) == {
        "inside_quotes",
        "line_position",
        "bracket_depth",
        "line_start",
        "whitespace",
    }
    with pytest.raises(ValueError, match="unknown feature 'depth'; choose one of inside_quotes"):
        text_feature(s, "depth")


# ---- find_units with planted units -------------------------------------------------

BRACKET_UNIT, LINE_UNIT = 3, 5


def planted_model(text: str):
    """An IRNN whose unit 3 counts open brackets and unit 5 the characters since a newline.

    ``h = relu(W_ih x + W_hh h_prev)`` with one-hot ``x``: unit 3 has a self-weight 1 and
    input +1 on ``([{`` and -1 on ``)]}`` (relu keeps it at 0 for a stray closer, as
    ``bracket_depth`` does); unit 5 has a self-weight 1, +1 on every character and -1000
    on a newline, which relu turns into a reset to 0.
    """
    vocab = Vocab.from_text(text)
    torch.manual_seed(1)
    config = LMConfig(
        vocab_size=len(vocab),
        cell="irnn",
        hidden_size=8,
        num_layers=1,
        embedding_size=None,
        dropout=0.0,
        engine="loop",
    )
    model = LanguageModel(config)
    cell = model.rnn.layers[0].cell
    index = {token: i for i, token in enumerate(vocab.tokens)}
    with torch.no_grad():
        cell.weight_hh.copy_(0.5 * torch.eye(8) + 0.1 * torch.randn(8, 8))
        cell.bias_ih.uniform_(-0.2, 0.2)
        for unit in (BRACKET_UNIT, LINE_UNIT):
            cell.weight_hh[unit].zero_()
            cell.weight_hh[unit, unit] = 1.0
            cell.weight_ih[unit].zero_()
            cell.bias_ih[unit] = cell.bias_hh[unit] = 0.0
        for char in "([{":
            cell.weight_ih[BRACKET_UNIT, index[char]] = 1.0
        for char in ")]}":
            cell.weight_ih[BRACKET_UNIT, index[char]] = -1.0
        cell.weight_ih[LINE_UNIT] = 1.0
        cell.weight_ih[LINE_UNIT, index["\n"]] = -1000.0
    return model, vocab


def test_find_units_ranks_planted_units_first():
    model, vocab = planted_model(CODE)
    record = record_activations(model, vocab, CODE)
    depth = text_feature(CODE, "bracket_depth")
    assert depth.max() == 2  # g([a], ...) nests two deep
    np.testing.assert_array_equal(record.unit(BRACKET_UNIT), depth)  # exact: small integers
    longest = max(len(line) for line in CODE.split("\n"))
    assert longest == 36
    counts = text_feature(CODE, "line_position") * longest
    np.testing.assert_allclose(record.unit(LINE_UNIT), counts, atol=1e-5)
    ranked = find_units(record, "bracket_depth")
    assert ranked[0][0] == BRACKET_UNIT and ranked[0][1] > 0.999
    assert len(ranked) == 8 and sorted(u for u, _ in ranked) == list(range(8))
    strengths = [abs(r) for _, r in ranked]
    assert strengths == sorted(strengths, reverse=True) and strengths[1] < 0.99
    line = find_units(record, "line_position", top=2)
    assert len(line) == 2 and line[0][0] == LINE_UNIT and line[0][1] > 0.999
    # a user array, per token; a unit tracking it negatively ranks by |r|
    flipped = find_units(record, 1 - 2 * record.unit(LINE_UNIT))
    assert flipped[0][0] == LINE_UNIT and flipped[0][1] == pytest.approx(-1.0, abs=1e-9)
    # hand check of r for one unit against numpy's corrcoef
    whitespace = text_feature(CODE, "whitespace")
    r = dict(find_units(record, "whitespace"))
    expected = np.corrcoef(record.unit(0).astype(np.float64), whitespace)[0, 1]
    assert r[0] == pytest.approx(expected, abs=1e-9)


def test_find_units_refuses_bad_features():
    model, vocab = planted_model(CODE)
    record = record_activations(model, vocab, CODE)
    with pytest.raises(ValueError, match=f"one value per token \\({len(CODE)}\\) or per char"):
        find_units(record, np.zeros(7))
    with pytest.raises(ValueError, match="constant over this text"):
        find_units(record_activations(model, vocab, "def"), "inside_quotes")
    with pytest.raises(ValueError, match="NaN"):
        find_units(record, np.full(len(CODE), np.nan))
    with pytest.raises(ValueError, match="top must be"):
        find_units(record, "whitespace", top=0)


# ---- the HTML page ------------------------------------------------------------------


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def page_data(page: str) -> dict:
    return json.loads(
        _between(page, '<script type="application/json" id="unit-data">', "</script>")
    )


def test_unit_color_scale():
    assert unit_color(0.0) == "rgb(255, 255, 255)"
    assert unit_color(1.0) == unit_color(3.0) == "rgb(255, 0, 0)"
    assert unit_color(-1.0) == unit_color(-7.0) == "rgb(0, 0, 255)"
    assert unit_color(0.2) == "rgb(255, 204, 204)"  # 255 * 0.8
    assert unit_color(-0.5) == "rgb(128, 128, 255)"  # 127.5 rounds up, as Math.round


def test_unit_html_escapes_text_embeds_data_and_colours_spans(tmp_path):
    model, vocab = lstm_model(SPECIAL)
    record = record_activations(model, vocab, SPECIAL)
    page = unit_html(record, 2, units=[5, 2, 7], labels={5: "quotes <?>"}, title="a & b")
    assert page.count("</script") == 2  # the two closing tags: the text's "</script>" is escaped
    assert "<!--" not in page and "http" not in page and "src=" not in page
    for escaped in ("&lt;", "&gt;", "&amp;", "&quot;", "&#x27;", "\t", "é"):
        assert f">{escaped}</span>" in page  # one character per span, escaped
    assert "<title>a &amp; b</title>" in page and "unit 5 — quotes &lt;?&gt;" in page
    assert re.findall(r'<option value="(\d*)"', page) == ["2", "5", "7", ""]
    text = _between(page, '<div id="text">', '</div>\n<div id="tip">')
    assert html.unescape(re.sub(r"<[^>]*>", "", text)) == SPECIAL.replace("\x00", "\u2400")
    assert '<span class="t ctl" data-i="41"' in text and text.count('class="t nl"') == 2
    styles = re.findall(r'style="background: (rgb\([^)]*\))(; color: #fff)?"', text)
    values = np.round(record.unit(2).astype(np.float64), 3)
    assert [bg for bg, _ in styles] == [unit_color(v) for v in values]
    dark = np.floor(255 * (1 - np.abs(np.clip(values, -1, 1))) + 0.5) < 110  # white letters
    assert [bool(white) for _, white in styles] == dark.tolist()
    planted, planted_vocab = planted_model(CODE)  # bracket unit: 0 outside, >= 1 inside
    counted = unit_html(record_activations(planted, planted_vocab, CODE), BRACKET_UNIT)
    inside = int((text_feature(CODE, "bracket_depth") >= 1).sum())
    assert inside == 5 + 2 + 14 + 2  # "(a, b", "(y", "([a], {b: 'z'}", "(a"
    assert counted.count('style="background: rgb(255, 0, 0); color: #fff"') == inside
    assert counted.count('style="background: rgb(255, 255, 255)"') == len(CODE) - inside
    data = page_data(page)
    assert data["tokens"] == list(SPECIAL) and data["start"] == 2 and data["listed"] == [2, 5, 7]
    assert len(data["acts"]) == 12 and data["top"] == record.top_ids.tolist()
    np.testing.assert_allclose(data["acts"][7], record.unit(7), atol=5e-4)
    np.testing.assert_allclose(data["probs"], record.top_probs, atol=5e-6)
    out = write_unit_html(tmp_path / "units.html", record, [5, 2])
    assert out.read_text(encoding="utf-8") == unit_html(record, 5, units=[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["units.html"]  # no temporary left
    with pytest.raises(ValueError, match="at least one unit"):
        write_unit_html(tmp_path / "none.html", record, [])
    # a lone surrogate (a str may hold one; UTF-8 cannot) is shown as U+FFFD
    odd = "a\ud800b"
    model, vocab = lstm_model(odd, layers=1)
    written = write_unit_html(tmp_path / "odd.html", record_activations(model, vocab, odd), [0])
    assert '>a</span><span class="t" data-i="1"' in written.read_text(encoding="utf-8")
    assert ">\ufffd</span>" in written.read_text(encoding="utf-8")


# ---- in a real browser --------------------------------------------------------------

COLOURS_JS = "Array.from(document.querySelectorAll('#text .t')).map(s => s.style.backgroundColor)"
WHITE_JS = "document.querySelectorAll('#text .t[style*=\"color: rgb(255, 255, 255)\"]').length"
SET_INPUT_JS = """(() => { const i = document.getElementById('unit-input'); i.value = '%d';
  i.dispatchEvent(new Event('change')); return document.body.dataset.unit; })()"""
SET_SELECT_JS = """(() => { const s = document.getElementById('unit-select'); s.value = '%d';
  s.dispatchEvent(new Event('change')); return document.body.dataset.unit; })()"""
CENTRE_JS = """(() => { const r = document.querySelector('#text .t[data-i="%d"]')
  .getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"""
TIP_JS = """(() => { const tip = document.getElementById('tip');
  return {display: tip.style.display, i: tip.dataset.i, head: tip.firstChild.textContent,
  rows: Array.from(tip.querySelectorAll('tr.pred')).map(r => [r.dataset.token, +r.dataset.p,
  r.cells[1].textContent, r.classList.contains('next')])}; })()"""


def test_page_in_headless_chromium(tmp_path):
    from browser import chromium_or_skip, open_page

    binary = chromium_or_skip()
    model, vocab = lstm_model(SPECIAL)
    record = record_activations(model, vocab, SPECIAL)
    path = write_unit_html(tmp_path / "units.html", record, [2, 5])
    page_source = path.read_text(encoding="utf-8")

    def expected_colours(unit: int) -> list[str]:
        return [unit_color(round(float(a), 3)) for a in record.unit(unit)]

    with open_page(binary, path) as page:
        shown = page.evaluate("document.getElementById('text').textContent")
        assert shown == SPECIAL.replace("\x00", "\u2400")
        assert page.evaluate("document.body.dataset.unit") == "2"  # the script ran
        assert page.evaluate(COLOURS_JS) == expected_colours(2)
        assert page.evaluate(WHITE_JS) == page_source.count("; color: #fff")
        assert page.evaluate(SET_INPUT_JS % 9) == "9"  # any unit, not listed
        assert page.evaluate(COLOURS_JS) == expected_colours(9)
        assert page.evaluate("document.getElementById('unit-select').value") == ""
        assert page.evaluate(SET_INPUT_JS % 99) == "9"  # out of range: ignored
        assert page.evaluate(SET_SELECT_JS % 5) == "5"
        assert page.evaluate(COLOURS_JS) == expected_colours(5)
        t = SPECIAL.index("print(") + 5  # the "(": what comes after it?
        x, y = page.evaluate(CENTRE_JS % t)
        page.hover(x, y)
        tip = page.evaluate(TIP_JS)
        assert tip["display"] == "block" and tip["i"] == str(t)
        value = float(re.search(r"h = (-?[0-9.]+)$", tip["head"]).group(1))
        assert value == pytest.approx(record.unit(5)[t], abs=5e-4)
        assert [row[0] for row in tip["rows"]] == [tok for tok, _ in record.predictions(t)]
        np.testing.assert_allclose([row[1] for row in tip["rows"]], record.top_probs[t], atol=1e-5)
        for token, p, percent, is_next in tip["rows"]:
            assert float(percent.rstrip("%")) == pytest.approx(100 * p, abs=0.051)
            assert is_next == (token == SPECIAL[t + 1])
        assert page.errors == []
    with open_page(binary, path, fragment="#unit=7") as page:
        assert page.evaluate("document.body.dataset.unit") == "7"
        assert page.evaluate(COLOURS_JS) == expected_colours(7)
        assert page.errors == []


def test_browser_helper_reports_console_errors(tmp_path):
    from browser import chromium_or_skip, open_page

    binary = chromium_or_skip()
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><p id=p>ok &lt;3</p><script>console.error('boom', 42);"
        "undefinedFunction();</script>",
        encoding="utf-8",
    )
    with open_page(binary, bad) as page:
        assert page.evaluate("document.getElementById('p').textContent") == "ok <3"
        assert page.errors[0] == "console.error: boom 42"
        assert "undefinedFunction is not defined" in page.errors[1] and len(page.errors) == 2
