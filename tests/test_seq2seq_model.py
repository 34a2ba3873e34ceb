"""Seq2Seq: padding invariance, attention and bridge equations, gradcheck, the two decoder
paths, scheduled sampling, config round trip, and learning to reverse short sequences."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch.func import functional_call

from rnnkit.data.pairs import END_ID, PAD_ID, START_ID
from rnnkit.models import decode
from rnnkit.models.attention import BahdanauAttention, LuongAttention
from rnnkit.models.seq2seq import (
    Decoder,
    Encoder,
    Seq2Seq,
    Seq2SeqConfig,
    repeat_rows,
    select_rows,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

SRC_V, TGT_V = 11, 9
LENGTHS = torch.tensor([5, 2, 7, 1])
TGT_LENGTHS = torch.tensor([3, 6, 1, 4])


def model(attention="bahdanau", *, enc_cell="gru", dec_cell="lstm", bidirectional=True, **kw):
    torch.manual_seed(0)
    enc_layers = kw.pop("enc_layers", 2)
    enc = Encoder(SRC_V, 4, 5, enc_layers, cell=enc_cell, bidirectional=bidirectional)
    dec_engine = kw.pop("dec_engine", "auto")
    dec = Decoder(TGT_V, 3, 6, kw.pop("dec_layers", 2), cell=dec_cell, engine=dec_engine)
    return Seq2Seq(enc, dec, attention, **kw).double().eval()


def padded_batch(seed=1):
    """Sources padded with garbage ids past each length, and padded targets."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, SRC_V, (4, 7), generator=g)
    garbage = torch.randint(0, SRC_V, (4, 7), generator=g)
    src = torch.where(torch.arange(7)[None] < LENGTHS[:, None], src, garbage)
    tgt = torch.randint(4, TGT_V, (4, 6), generator=g)
    tgt[:, 0] = START_ID
    tgt = tgt.masked_fill(torch.arange(6)[None] >= TGT_LENGTHS[:, None], PAD_ID)
    return src, tgt


# ---- padding ---------------------------------------------------------------------------


@pytest.mark.parametrize("attention", [None, "bahdanau", "luong"])
def test_padding_changes_nothing(attention):
    m = model(attention)
    src, tgt = padded_batch()
    kw = {"return_attention": True} if attention else {}
    out = m(src, LENGTHS, tgt, **kw)
    logits, alpha = out if attention else (out, None)
    for b in range(4):
        L, U = int(LENGTHS[b]), int(TGT_LENGTHS[b])
        alone = m(src[b : b + 1, :L], LENGTHS[b : b + 1], tgt[b : b + 1, :U], **kw)
        alone_logits, alone_alpha = alone if attention else (alone, None)
        assert (logits[b, :U] - alone_logits[0]).abs().max() < 1e-12
        if attention:
            assert (alpha[b, :U, :L] - alone_alpha[0]).abs().max() < 1e-12
            assert torch.equal(alpha[b, :, L:], torch.zeros_like(alpha[b, :, L:]))
            assert (alpha[b].sum(-1) - 1).abs().max() < 1e-12


def test_padding_changes_nothing_in_the_step_path():
    m = model("luong", input_feeding=False)
    src, tgt = padded_batch()
    memory = m.encode(src, LENGTHS)
    steps, _ = m._decode_steps(tgt, memory, 0.0, None)
    for b in range(4):
        L, U = int(LENGTHS[b]), int(TGT_LENGTHS[b])
        alone = m(src[b : b + 1, :L], LENGTHS[b : b + 1], tgt[b : b + 1, :U])
        assert (steps[b, :U] - alone[0]).abs().max() < 1e-12


# ---- equations -------------------------------------------------------------------------


def test_bahdanau_matches_its_equation():
    torch.manual_seed(3)
    att = BahdanauAttention(4, 6, 5).double()
    s = torch.randn(2, 1, 4, dtype=torch.float64)
    h = torch.randn(2, 3, 6, dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        c, alpha = att(s, att.keys(h), h, mask)
    Wq, Wk, v = att.query.weight, att.key.weight, att.v.weight[0]
    for b in range(2):
        n = int(mask[b].sum())
        score = torch.stack([v @ torch.tanh(Wq @ s[b, 0] + Wk @ h[b, j]) for j in range(n)])
        expect = torch.softmax(score, 0)
        assert (alpha[b, 0, :n] - expect).abs().max() < 1e-14
        assert (c[b, 0] - (expect[:, None] * h[b, :n]).sum(0)).abs().max() < 1e-14
    assert float(alpha[0, 0, 2]) == 0.0


def test_luong_matches_its_equation():
    torch.manual_seed(3)
    att = LuongAttention(4, 6).double()
    s = torch.randn(2, 2, 4, dtype=torch.float64)
    h = torch.randn(2, 3, 6, dtype=torch.float64)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    with torch.no_grad():
        c, alpha = att(s, att.keys(h), h, mask)
    Wa, Wc = att.key.weight, att.combine.weight
    for b in range(2):
        n = int(mask[b].sum())
        for q in range(2):
            score = torch.stack([s[b, q] @ Wa @ h[b, j] for j in range(n)])
            expect = torch.softmax(score, 0)
            assert (alpha[b, q, :n] - expect).abs().max() < 1e-14
            context = (expect[:, None] * h[b, :n]).sum(0)
            assert (c[b, q] - context).abs().max() < 1e-14
            h_tilde = torch.tanh(Wc @ torch.cat([context, s[b, q]]))
            assert (att.attentional(c[b, q], s[b, q]) - h_tilde).abs().max() < 1e-14
    assert float(alpha[0, :, 1:].abs().sum()) == 0.0


def test_bridge_copies_a_fitting_state_and_maps_the_others():
    src, _ = padded_batch()
    # Same kind, size and depth, one-way encoder: the decoder starts from the encoder's
    # final state itself.
    torch.manual_seed(0)
    enc = Encoder(SRC_V, 4, 6, 2, cell="lstm")
    m = Seq2Seq(enc, Decoder(TGT_V, 3, 6, 2, cell="lstm"), None).double()
    _, final, _ = m.encoder(src, LENGTHS)
    state = m.encode(src, LENGTHS).state.rnn
    assert m.bridge.copy and not list(m.bridge.parameters())
    assert all(
        torch.equal(a, b)
        for la, lb in zip(final, state, strict=True)
        for a, b in zip(la, lb, strict=True)
    )
    # Bidirectional GRU, 3 layers -> LSTM, 2 layers: tops aligned, [h_fwd; h_bwd] through
    # tanh(Linear), c0 = 0.
    m = model(None, enc_layers=3, dec_layers=2)
    assert m.bridge.sources == [1, 2] and m.bridge.c is None
    _, final, _ = m.encoder(src, LENGTHS)
    state = m.encode(src, LENGTHS).state.rnn
    for k, source in enumerate([1, 2]):
        (h_fwd,), (h_bwd,) = final[source]
        lin = m.bridge.h[k]
        expect = torch.tanh(torch.cat([h_fwd, h_bwd], -1) @ lin.weight.T + lin.bias)
        assert (state[k][0] - expect).abs().max() < 1e-14
        assert float(state[k][1].abs().sum()) == 0.0
    # LSTM -> LSTM of another size: c0 from its own Linear, without tanh.
    m = model(None, enc_cell="lstm", bidirectional=False)
    _, final, _ = m.encoder(src, LENGTHS)
    state = m.encode(src, LENGTHS).state.rnn
    _, c_enc = final[1]
    lin = m.bridge.c[1]
    assert (state[1][1] - (c_enc @ lin.weight.T + lin.bias)).abs().max() < 1e-14


# ---- gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_gradcheck(attention):
    torch.manual_seed(0)
    enc = Encoder(6, 2, 2, 1, cell="gru", bidirectional=True)
    dec = Decoder(5, 2, 3, 1, cell="lstm")
    m = Seq2Seq(enc, dec, attention).double()
    src = torch.tensor([[4, 5, 1], [5, 0, 0]])
    lengths = torch.tensor([3, 1])
    tgt_in = torch.tensor([[START_ID, 4, 3], [START_ID, 3, PAD_ID]])
    tgt_out = torch.tensor([[4, 3, END_ID], [3, END_ID, PAD_ID]])
    names = [
        "encoder.embedding.weight",
        "bridge.h.0.weight",
        "attention.key.weight",
        "decoder.rnn.layers.0.cell.weight_hh",
        "head.bias",
    ]
    names += ["attention.v.weight"] if attention == "bahdanau" else ["attention.combine.weight"]
    params = dict(m.named_parameters())
    inputs = tuple(params[n].detach().clone().requires_grad_(True) for n in names)

    def loss(*tensors):
        logits = functional_call(m, dict(zip(names, tensors, strict=True)), (src, lengths, tgt_in))
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, 5), tgt_out.reshape(-1), ignore_index=PAD_ID
        )

    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-7)


# ---- the two decoder paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attention", "cell", "engine"),
    [
        (None, "lstm", "native"),
        ("luong", "gru", "native"),
        ("luong", "lstm", "fused"),
        (None, "leaky", "fused"),
        ("luong", "rnn", "loop"),
    ],
)
def test_whole_sequence_path_equals_step_by_step(attention, cell, engine):
    kw = {"input_feeding": False} if attention == "luong" else {}
    m = model(attention, dec_cell=cell, dec_engine=engine, **kw)
    assert m.whole_sequence
    src, tgt = padded_batch()
    memory = m.encode(src, LENGTHS)
    whole, alpha_w = m._decode_whole(tgt, memory)
    steps, alpha_s = m._decode_steps(tgt, memory, 0.0, None)
    assert (whole - steps).abs().max() < 1e-12
    if attention:
        assert (alpha_w - alpha_s).abs().max() < 1e-12
    # ... and so are their gradients.
    grads = []
    for path in (m._decode_whole, lambda t, mem: m._decode_steps(t, mem, 0.0, None)):
        m.zero_grad()
        path(tgt, m.encode(src, LENGTHS))[0].square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 1e-12
    assert float(grads[0].abs().max()) > 1e-4


def test_scheduled_sampling_feeds_the_greedy_prediction():
    m = model("luong", input_feeding=False)
    src, tgt = padded_batch()
    # Always the model's own prediction: the same logits as teacher forcing with the
    # predictions as input.
    own = m(src, LENGTHS, tgt, sampling_ratio=1.0)
    fed = torch.cat([tgt[:, :1], own.argmax(-1)[:, :-1]], dim=1)
    assert (own - m(src, LENGTHS, fed)).abs().max() < 1e-12
    assert not torch.equal(fed[:, 1:], tgt[:, 1:])
    # Half the time, per example and step, drawn from the generator: rebuild the coins.
    mixed = m(src, LENGTHS, tgt, sampling_ratio=0.5, generator=torch.Generator().manual_seed(7))
    again = m(src, LENGTHS, tgt, sampling_ratio=0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(mixed, again)
    g = torch.Generator().manual_seed(7)
    fed = tgt.clone()
    coins = []
    for t in range(1, tgt.shape[1]):
        coin = torch.rand(4, generator=g) < 0.5
        coins.append(coin)
        fed[:, t] = torch.where(coin, mixed[:, t - 1].argmax(-1), tgt[:, t])
    assert 0 < int(torch.stack(coins).sum()) < torch.stack(coins).numel()
    assert (mixed - m(src, LENGTHS, fed)).abs().max() < 1e-12
    # With ratio 0 the teacher-forced loss; with ratio 0.5 a different one.
    batch = {"src": src, "src_lengths": LENGTHS, "tgt_in": tgt, "tgt_out": fed}
    assert m.loss(batch, 0.5, torch.Generator().manual_seed(7)) != m.loss(batch)


def test_loss_is_the_mean_over_real_target_tokens():
    m = model("bahdanau")
    src, tgt_in = padded_batch()
    tgt_out = torch.roll(tgt_in, -1, dims=1)
    tgt_out[torch.arange(4), TGT_LENGTHS - 1] = END_ID
    tgt_out = tgt_out.masked_fill(torch.arange(6)[None] >= TGT_LENGTHS[:, None], PAD_ID)
    logits = m(src, LENGTHS, tgt_in)
    log_probs = torch.log_softmax(logits, -1)
    total = sum(
        -float(log_probs[b, t, tgt_out[b, t]].detach())
        for b in range(4)
        for t in range(TGT_LENGTHS[b])
    )
    batch = {"src": src, "src_lengths": LENGTHS, "tgt_in": tgt_in, "tgt_out": tgt_out}
    assert abs(float(m.loss(batch).detach()) - total / int(TGT_LENGTHS.sum())) < 1e-12


def test_state_helpers_select_and_repeat_rows():
    m = model("luong")
    src, _ = padded_batch()
    memory = m.encode(src, LENGTHS)
    twice = repeat_rows(memory, 2)
    assert torch.equal(twice.values[::2], memory.values)
    assert torch.equal(twice.state.rnn[1][1][1::2], memory.state.rnn[1][1])
    index = torch.tensor([3, 0, 0])
    picked = select_rows(memory, index)
    assert torch.equal(picked.mask, memory.mask[index])
    assert torch.equal(picked.state.feed, memory.state.feed[index])


# ---- config -------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", [None, "bahdanau", "luong"])
def test_config_rebuilds_the_model(attention):
    m = model(attention, attention_size=7) if attention == "bahdanau" else model(attention)
    saved = json.loads(json.dumps(m.config.to_dict()))
    assert saved["attention"] == (attention or "none")
    rebuilt = Seq2Seq.from_config(Seq2SeqConfig.from_dict(saved)).double().eval()
    rebuilt.load_state_dict(m.state_dict())
    assert rebuilt.config == m.config
    src, tgt = padded_batch()
    assert torch.equal(rebuilt(src, LENGTHS, tgt), m(src, LENGTHS, tgt))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attention": "dot"}, "attention='dot' is not supported"),
        ({"tgt_vocab_size": 3}, "tgt_vocab_size must be at least 4"),
        ({"bridge": "zeros"}, "bridge='zeros' is not supported"),
        ({"decoder_cell": "tree"}, "cell='tree' is not supported"),
        ({"encoder_dropout": 1.5}, "dropout must be a probability"),
        ({"bidirectional": "yes"}, "bidirectional must be true or false"),
    ],
)
def test_config_errors_are_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as err:
        Seq2SeqConfig(**{"src_vocab_size": 10, "tgt_vocab_size": 10, **settings})
    assert "\n" not in str(err.value)


def test_input_errors_are_one_line():
    m = model("bahdanau")
    src, tgt = padded_batch()
    cases = [
        (lambda: m(src.float(), LENGTHS, tgt), "expected src as an int64 tensor"),
        (lambda: m(src, torch.tensor([5, 2, 8, 1]), tgt), "every source length must be in 1..7"),
        (lambda: m(src, LENGTHS, tgt + TGT_V), "tgt_in ids must be in 0..8"),
        (lambda: m(src, LENGTHS, tgt[:3]), "src holds 4 sequences but tgt_in 3"),
        (lambda: m(src, LENGTHS, tgt, sampling_ratio=1.5), "sampling_ratio must be in"),
        (lambda: model(None)(src, LENGTHS, tgt, return_attention=True), "has no attention"),
        (lambda: Seq2SeqConfig.from_dict({"src_vocab_size": 5, "x": 1}), "unknown seq2seq"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


# ---- learning -----------------------------------------------------------------------------


def reverse_batch(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Sources of 3-6 symbols (ids 4..8); targets the same symbols reversed."""
    lengths = torch.randint(3, 7, (n,), generator=g)
    S = int(lengths.max())
    src = torch.randint(4, 9, (n, S), generator=g)
    src = src.masked_fill(torch.arange(S)[None] >= lengths[:, None], PAD_ID)
    tgt_in = torch.full((n, S + 1), PAD_ID)
    tgt_out = torch.full((n, S + 1), PAD_ID)
    for b, L in enumerate(lengths.tolist()):
        target = src[b, :L].flip(0)
        tgt_in[b, 0], tgt_in[b, 1 : L + 1] = START_ID, target
        tgt_out[b, :L], tgt_out[b, L] = target, END_ID
    return {"src": src, "src_lengths": lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_learns_to_reverse_short_sequences(attention):
    torch.manual_seed(0)
    m = Seq2Seq(
        Encoder(9, 16, 32, cell="gru", bidirectional=True),
        Decoder(9, 16, 32, cell="gru"),
        attention,
    )
    opt = torch.optim.Adam(m.parameters(), lr=0.005)
    g = torch.Generator().manual_seed(1)
    start = time.process_time()  # CPU time: the machine is shared
    for _ in range(400):
        loss = m.loss(reverse_batch(32, g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
    test = reverse_batch(300, torch.Generator().manual_seed(99))
    hyps = decode.greedy(m, test["src"], test["src_lengths"], max_len=8)
    lengths = test["src_lengths"].tolist()
    exact = [h.tokens == test["src"][b, : lengths[b]].flip(0).tolist() for b, h in enumerate(hyps)]
    accuracy = sum(exact) / len(exact)
    assert accuracy >= 0.95, accuracy
    assert all(h.finished for h in hyps)
    assert time.process_time() - start < 20
