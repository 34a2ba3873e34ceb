"""Decoding a Seq2Seq: greedy, beam search (against greedy and exhaustive search),
sampling, scoring, padding invariance and argument checks."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from rnnkit.data.pairs import END_ID, PAD_ID, START_ID
from rnnkit.models.decode import beam_search, greedy, sample, score
from rnnkit.models.seq2seq import Decoder, Encoder, Seq2Seq

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

ATTENTIONS = [None, "bahdanau", "luong"]


def reverse_batch(n, g, symbols=5, shortest=3, longest=6):
    """Sources of ``shortest..longest`` symbols (ids 4..); targets the same reversed."""
    lengths = torch.randint(shortest, longest + 1, (n,), generator=g)
    S = int(lengths.max())
    src = torch.randint(4, 4 + symbols, (n, S), generator=g)
    src = src.masked_fill(torch.arange(S)[None] >= lengths[:, None], PAD_ID)
    tgt_in = torch.full((n, S + 1), PAD_ID)
    tgt_out = torch.full((n, S + 1), PAD_ID)
    for b, L in enumerate(lengths.tolist()):
        target = src[b, :L].flip(0)
        tgt_in[b, 0], tgt_in[b, 1 : L + 1] = START_ID, target
        tgt_out[b, :L], tgt_out[b, L] = target, END_ID
    return {"src": src, "src_lengths": lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


@functools.cache
def half_trained(attention, symbols=5, shortest=3, longest=6, steps=50):
    """A model trained a little on reversal: its outputs depend on the input, end at
    different lengths, and are uncertain enough for beam search to differ from greedy.
    (Untrained models mostly repeat one output whatever the input.)"""
    torch.manual_seed(0)
    V = 4 + symbols
    enc = Encoder(V, 8, 12, 1, cell="gru", bidirectional=True)
    m = Seq2Seq(enc, Decoder(V, 8, 12, 1, cell="lstm"), attention).double()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss = m.loss(reverse_batch(32, g, symbols, shortest, longest))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return m.eval()


def untrained(attention, seed=0):
    torch.manual_seed(seed)
    enc = Encoder(9, 4, 5, 2, cell="gru", bidirectional=True)
    return Seq2Seq(enc, Decoder(9, 3, 6, 1, cell="lstm"), attention).double().eval()


def sources(n, seed=0, symbols=5, shortest=3, longest=6):
    batch = reverse_batch(n, torch.Generator().manual_seed(100 + seed), symbols, shortest, longest)
    return batch["src"], batch["src_lengths"]


def with_end(h):
    return h.tokens + [END_ID] * h.finished


# ---- greedy and score ---------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_score_of_the_greedy_output_is_its_log_prob(attention):
    m = half_trained(attention)
    src, lengths = sources(40)
    hyps = greedy(m, src, lengths, max_len=4)
    finished = sum(h.finished for h in hyps)
    assert 5 <= finished <= 35  # both endings: </s>, and cut at max_len
    scored = score(m, src, lengths, [with_end(h) for h in hyps])
    for h, s in zip(hyps, scored.tolist(), strict=True):
        assert abs(h.log_prob - s) < 1e-10
        assert h.score == h.log_prob
        assert len(h.tokens) == (h.length - 1 if h.finished else 4)
        assert END_ID not in h.tokens


def test_greedy_takes_the_argmax_at_every_step():
    m = half_trained("bahdanau")
    src, lengths = sources(5)
    hyps = greedy(m, src, lengths, max_len=7)
    for b, h in enumerate(hyps):
        prefix = []
        for token in with_end(h):
            tgt_in = torch.tensor([[START_ID, *prefix]])
            logits = m(src[b : b + 1, : lengths[b]], lengths[b : b + 1], tgt_in)
            assert int(logits[0, -1].argmax()) == token
            prefix.append(token)


def test_score_accepts_a_padded_tensor():
    m = half_trained("luong")
    src, lengths = sources(3)
    targets = [[5, 6, END_ID], [7], [4, 4, 4, 4]]
    padded = torch.zeros(3, 4, dtype=torch.long)
    for b, t in enumerate(targets):
        padded[b, : len(t)] = torch.tensor(t)
    by_list = score(m, src, lengths, targets)
    by_tensor = score(m, src, lengths, padded, torch.tensor([3, 1, 4]))
    assert (by_list - by_tensor).abs().max() < 1e-12
    # By hand, one token at a time through the step API.
    memory = m.encode(src[2:], lengths[2:])
    state, prev, total = memory.state, torch.tensor([START_ID]), 0.0
    with torch.no_grad():
        for token in targets[2]:
            log_probs, state, _ = m.step(prev, state, memory)
            total += float(log_probs[0, token])
            prev = torch.tensor([token])
    assert abs(total - float(by_list[2])) < 1e-12


# ---- beam search ---------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("length_penalty", [0.0, 0.8])
@pytest.mark.parametrize("trained", [False, True])
def test_beam_of_one_is_greedy(attention, length_penalty, trained):
    m = half_trained(attention) if trained else untrained(attention)
    src, lengths = sources(60, seed=1)
    greedy_hyps = greedy(m, src, lengths, max_len=6)
    beam_hyps = beam_search(m, src, lengths, beam=1, max_len=6, length_penalty=length_penalty)
    if trained:
        assert sum(h.finished for h in greedy_hyps) >= 10
        assert len({tuple(h.tokens) for h in greedy_hyps}) >= 10
    longer = 0
    for g, b in zip(greedy_hyps, beam_hyps, strict=True):
        if length_penalty == 0:
            assert b.tokens == g.tokens and b.finished == g.finished
            assert abs(b.log_prob - g.log_prob) < 1e-10
        else:  # greedy's output is among those found; a longer one may score higher
            assert b.score >= g.log_prob / g.length**length_penalty - 1e-12
            longer += b.length > g.length
        assert abs(b.score - b.log_prob / b.length**length_penalty) < 1e-10
    if length_penalty and trained:
        assert longer >= 1


def all_sequences(V, max_len):
    """Every output of at most ``max_len`` tokens: ended by </s>, or cut at max_len."""
    others = [v for v in range(V) if v != END_ID]
    out = []
    for n in range(max_len):
        out += [[*p, END_ID] for p in itertools.product(others, repeat=n)]
    return out + [list(p) for p in itertools.product(others, repeat=max_len)]


@pytest.mark.parametrize("attention", [None, "bahdanau", "luong"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_is_exhaustive_search(attention, length_penalty):
    V, max_len = 7, 3  # 4 specials + 3 symbols; 7**3 = 343 >= every candidate
    m = half_trained(attention, symbols=3, shortest=1, longest=3, steps=30)
    src, lengths = sources(4, seed=3, symbols=3, shortest=1, longest=3)
    candidates = all_sequences(V, max_len)
    assert len(candidates) == 1 + 6 + 36 + 216
    found = beam_search(
        m,
        src,
        lengths,
        beam=V**max_len,
        max_len=max_len,
        length_penalty=length_penalty,
        return_all=True,
    )
    n = len(candidates)
    for b in range(4):
        scores = score(m, src[b : b + 1].expand(n, -1), lengths[b : b + 1].expand(n), candidates)
        lengths_ = torch.tensor([len(c) for c in candidates], dtype=torch.float64)
        normalised = scores / lengths_**length_penalty
        best = int(normalised.argmax())
        top = found[b][0]
        assert with_end(top) == candidates[best]
        assert abs(top.log_prob - float(scores[best])) < 1e-10
        assert abs(top.score - float(normalised[best])) < 1e-10
        # The beam kept every candidate, each with the log-probability score() gives it.
        by_tokens = {tuple(with_end(h)): h.log_prob for h in found[b]}
        assert len(by_tokens) == n
        assert (
            max(
                abs(by_tokens[tuple(c)] - s)
                for c, s in zip(candidates, scores.tolist(), strict=True)
            )
            < 1e-10
        )


def test_length_penalty_picks_longer_outputs():
    m = half_trained("bahdanau", symbols=3, shortest=1, longest=3, steps=30)
    src, lengths = sources(30, seed=4, symbols=3, shortest=1, longest=3)
    plain = beam_search(m, src, lengths, beam=6, max_len=5)
    even = beam_search(m, src, lengths, beam=6, max_len=5, length_penalty=1.0)
    changed = [(p, e) for p, e in zip(plain, even, strict=True) if p.tokens != e.tokens]
    assert len(changed) >= 1
    for p, e in changed:
        assert e.length > p.length and e.log_prob < p.log_prob
        assert math.isclose(e.score, e.log_prob / e.length, rel_tol=1e-12)


def test_beam_search_beats_greedy():
    m = half_trained("bahdanau")
    src, lengths = sources(60, seed=4)
    g = greedy(m, src, lengths, max_len=7)
    wide = beam_search(m, src, lengths, beam=5, max_len=7, return_all=True)
    better = 0
    for gh, hyps in zip(g, wide, strict=True):
        if gh.finished:
            assert hyps[0].log_prob >= gh.log_prob - 1e-12
            better += hyps[0].log_prob > gh.log_prob + 1e-9
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        # Stopped with `beam` finished hypotheses, or ran to max_len and kept cut ones.
        assert sum(h.finished for h in hyps) >= 5 or any(not h.finished for h in hyps)
    assert better >= 5


# ---- sampling ---------------------------------------------------------------------------


def test_sampling_is_reproducible_and_scored():
    m = half_trained("luong")
    src, lengths = sources(20)

    def run(seed):
        return sample(m, src, lengths, max_len=7, generator=torch.Generator().manual_seed(seed))

    first, again, other = run(0), run(0), run(1)
    assert [h.tokens for h in first] == [h.tokens for h in again]
    assert [h.tokens for h in first] != [h.tokens for h in other]
    scored = score(m, src, lengths, [with_end(h) for h in first])
    assert max(abs(h.log_prob - s) for h, s in zip(first, scored.tolist(), strict=True)) < 1e-10


def test_cold_sampling_approaches_greedy():
    m = half_trained("bahdanau")
    src, lengths = sources(100, seed=5)
    g = greedy(m, src, lengths, max_len=7)
    differ = []
    for temperature in (1.0, 0.3, 0.1, 1e-3):
        drawn = sample(
            m,
            src,
            lengths,
            max_len=7,
            temperature=temperature,
            generator=torch.Generator().manual_seed(0),
        )
        differ.append(sum(d.tokens != h.tokens for d, h in zip(drawn, g, strict=True)))
    assert differ == sorted(differ, reverse=True)
    assert differ[0] >= 30 and differ[-1] == 0


def test_sampled_first_tokens_follow_the_model():
    m = half_trained(None)
    src, lengths = sources(1)
    n = 4000
    hyps = sample(
        m,
        src.expand(n, -1),
        lengths.expand(n),
        max_len=1,
        temperature=2.0,
        generator=torch.Generator().manual_seed(3),
    )
    counts = torch.bincount(torch.tensor([with_end(h)[0] for h in hyps]), minlength=9)
    memory = m.encode(src, lengths)
    with torch.no_grad():
        log_probs, _, _ = m.step(torch.tensor([START_ID]), memory.state, memory)
    p = torch.softmax(log_probs[0] / 2.0, -1)
    assert float(p.max()) < 0.8  # a spread to check
    sigma = (p * (1 - p) / n).sqrt()
    z = ((counts / n - p) / sigma).abs()
    assert float(z.max()) < 4.0
    # The reported log-probability is the model's own (temperature 1).
    assert abs(hyps[0].log_prob - float(log_probs[0, with_end(hyps[0])[0]])) < 1e-12


# ---- batching, attention, mode, arguments -------------------------------------------------


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_decoding_alone_equals_decoding_in_a_padded_batch(attention):
    m = half_trained(attention)
    src, lengths = sources(6, seed=6, shortest=1)
    batch_greedy = greedy(m, src, lengths, max_len=7, return_attention=True)
    batch_beam = beam_search(m, src, lengths, beam=3, max_len=7, return_attention=True)
    for b in range(6):
        L = int(lengths[b])
        alone_src, alone_len = src[b : b + 1, :L], lengths[b : b + 1]
        (g,) = greedy(m, alone_src, alone_len, max_len=7, return_attention=True)
        (h,) = beam_search(m, alone_src, alone_len, beam=3, max_len=7, return_attention=True)
        for ours, theirs in ((batch_greedy[b], g), (batch_beam[b], h)):
            assert ours.tokens == theirs.tokens
            assert abs(ours.log_prob - theirs.log_prob) < 1e-12
            assert ours.attention.shape == (ours.length, L)
            assert (ours.attention - theirs.attention).abs().max() < 1e-12
            assert (ours.attention.sum(-1) - 1).abs().max() < 1e-12


def test_beam_attention_follows_the_chosen_hypothesis():
    m = half_trained("bahdanau")
    src, lengths = sources(4, seed=7)
    hyps = beam_search(m, src, lengths, beam=4, max_len=7, return_attention=True)
    for b, h in enumerate(hyps):
        memory = m.encode(src[b : b + 1], lengths[b : b + 1])
        state, prev = memory.state, torch.tensor([START_ID])
        with torch.no_grad():
            for t, token in enumerate(with_end(h)):
                _, state, alpha = m.step(prev, state, memory)
                assert (alpha[0, : lengths[b]] - h.attention[t]).abs().max() < 1e-12
                prev = torch.tensor([token])


def test_decoding_runs_in_eval_mode_and_restores_training():
    torch.manual_seed(0)
    enc = Encoder(9, 4, 5, 1, cell="lstm", dropout=0.5)
    m = Seq2Seq(enc, Decoder(9, 3, 6, 2, cell="gru", dropout=0.5), "bahdanau").double()
    src, lengths = sources(8)
    m.train()
    first = beam_search(m, src, lengths, beam=2, max_len=5)
    second = beam_search(m, src, lengths, beam=2, max_len=5)
    assert m.training
    assert [h.log_prob for h in first] == [h.log_prob for h in second]
    m.eval()
    again = beam_search(m, src, lengths, beam=2, max_len=5)
    assert [h.log_prob for h in again] == [h.log_prob for h in first]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, s, n: beam_search(m, s, n, beam=0, max_len=3), "beam must be an integer >= 1"),
        (lambda m, s, n: greedy(m, s, n, max_len=0), "max_len must be an integer >= 1"),
        (lambda m, s, n: sample(m, s, n, max_len=3, temperature=0.0), "temperature must be"),
        (
            lambda m, s, n: beam_search(m, s, n, beam=2, max_len=3, length_penalty=-1),
            "length_penalty must be a number >= 0",
        ),
        (lambda m, s, n: score(m, s, n, [[4], []]), "every target needs"),
        (lambda m, s, n: score(m, s, n, [[4], [40]]), "target ids must be in 0..8"),
        (lambda m, s, n: score(m, s, n, [[4]]), "expected 2 targets"),
        (lambda m, s, n: greedy(object(), s, n, max_len=3), "expected a Seq2Seq model"),
        (lambda m, s, n: greedy(m, s.float(), n, max_len=3), "expected src as an int64"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, message):
    m = untrained("luong")
    src, lengths = sources(2)
    with pytest.raises(ValueError, match=message) as err:
        call(m, src, lengths)
    assert "\n" not in str(err.value)
