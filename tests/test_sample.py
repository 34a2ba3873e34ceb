"""Sampling and beam search (``rnnkit.sample``) against hand-computed decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit.models import LanguageModel, LMConfig
from rnnkit.sample import generate, sample_text


class CharVocab:
    """Stand-in vocabulary: id 0 is "<unk>", then one id per character."""

    def __init__(self, chars: str = "abc\n", literal_unk: bool = False) -> None:
        self.itos = ["<unk>", *chars]
        self.stoi = {ch: i for i, ch in enumerate(self.itos) if i}
        self.literal_unk = literal_unk  # encode the text "<unk>" as id 0

    def encode(self, text: str) -> np.ndarray:
        if self.literal_unk and text == "<unk>":
            return np.array([0], dtype=np.int32)
        return np.array([self.stoi.get(ch, 0) for ch in text], dtype=np.int32)

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids)

    def token_text(self, i: int, previous: int | None = None) -> str:
        return self.itos[i]

    def __len__(self) -> int:
        return len(self.itos)


class ConstantLM(nn.Module):
    """Logits fixed to ``logits`` (V,) whatever the input; counts its forward calls."""

    def __init__(self, logits) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.calls = 0

    def forward(self, tokens, state=None):
        self.calls += 1
        T, B = tokens.shape
        return self.logits.expand(T, B, -1), ((torch.zeros(B, 1),),)


class MarkovLM(nn.Module):
    """Second-order Markov chain: ``logits = table[prev, token]``, ``prev`` carried in the state.

    ``table`` (V, V, V) holds log-probabilities; the state ``((prev (B,),),)`` is nested
    so beam search must reorder it correctly. The first token's ``prev`` is 0.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, tokens, state=None):
        T, B = tokens.shape
        prev = torch.zeros(B, dtype=torch.long) if state is None else state[0][0]
        out = []
        for t in range(T):
            out.append(self.table[prev, tokens[t]])  # (B, V)
            prev = tokens[t]
        return torch.stack(out), ((prev,),)  # (T, B, V)

    def score(self, prime_ids: list[int], seq: list[int]) -> float:
        """Total log-probability of ``seq`` after ``prime_ids``."""
        ids = [0, *prime_ids, *seq]
        start = len(prime_ids) + 1
        return sum(
            float(self.table[ids[i - 2], ids[i - 1], ids[i]]) for i in range(start, len(ids))
        )


def tiny_lm(vocab_size: int = 5, cell: str = "lstm", embedding_size=8, seed: int = 0):
    torch.manual_seed(seed)
    return LanguageModel(
        LMConfig(
            vocab_size,
            cell=cell,
            hidden_size=16,
            num_layers=2,
            embedding_size=embedding_size,
            dropout=0.0,
        )
    )


def greedy_by_hand(model, vocab, prime: str, length: int) -> str:
    """Argmax decoding stepping ``model.forward`` one token at a time."""
    with torch.no_grad():
        ids = torch.as_tensor(vocab.encode(prime), dtype=torch.long).view(-1, 1)
        logits, state = model(ids)
        out = []
        for _ in range(length):
            token = int(logits[-1, 0].argmax())
            out.append(vocab.token_text(token))
            logits, state = model(torch.tensor([[token]]), state)
    return "".join(out)


def test_same_seed_same_text_different_seed_different_text():
    model, vocab = tiny_lm(), CharVocab()
    first = sample_text(model, vocab, "ab", length=60, seed=1)
    assert sample_text(model, vocab, "ab", length=60, seed=1) == first
    assert sample_text(model, vocab, "ab", length=60, seed=2) != first
    assert len(first) >= 60  # one piece per token, "<unk>" counts 5 characters


@pytest.mark.parametrize(
    ("cell", "embedding_size"), [("lstm", 8), ("gru", 8), ("rnn", 8), ("leaky", 8), ("lstm", None)]
)
def test_temperature_zero_is_greedy(cell, embedding_size):
    model, vocab = tiny_lm(cell=cell, embedding_size=embedding_size, seed=3), CharVocab()
    expected = greedy_by_hand(model, vocab, "abca", 40)
    assert sample_text(model, vocab, "abca", length=40, temperature=0) == expected
    assert sample_text(model, vocab, "abca", length=40, top_k=1, seed=5) == expected


def test_empty_prime_starts_after_newline_or_unk():
    model = tiny_lm(seed=4)
    with_newline = CharVocab("abc\n")
    assert sample_text(model, with_newline, length=20, temperature=0) == greedy_by_hand(
        model, with_newline, "\n", 20
    )
    no_newline = CharVocab("abcd")  # id 0 starts: "<unk>" is never typed, so step by hand
    with torch.no_grad():
        logits, state = model(torch.zeros(1, 1, dtype=torch.long))
        expected = []
        for _ in range(10):
            token = int(logits[-1, 0].argmax())
            expected.append(no_newline.token_text(token))
            logits, state = model(torch.tensor([[token]]), state)
    assert sample_text(model, no_newline, length=10, temperature=0) == "".join(expected)


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, None), (0.7, None), (2.0, 2)])
def test_sampled_frequencies_match_softmax(temperature, top_k):
    logits = torch.tensor([-1.0, 0.5, 1.0, 0.0, 1.5])
    vocab = CharVocab("abcd")
    pieces = list(
        generate(ConstantLM(logits), vocab, "a", 5000, temperature=temperature, top_k=top_k, seed=0)
    )
    counts = np.array([pieces.count(vocab.token_text(i)) for i in range(5)])
    scaled = logits / temperature
    if top_k is not None:
        scaled[scaled < scaled.topk(top_k).values[-1]] = -float("inf")
    expected = torch.softmax(scaled, dim=0).numpy()
    np.testing.assert_allclose(counts / 5000, expected, atol=0.025)  # > 3.5 sigma
    if top_k is not None:
        assert counts[expected == 0].sum() == 0


def test_generate_streams_one_piece_per_token():
    model, vocab = ConstantLM([0.0, 1.0, 1.0, 1.0, 1.0]), CharVocab()
    stream = generate(model, vocab, "abc", length=7, seed=0)
    assert model.calls == 0  # nothing runs before the first token is asked for
    first = next(stream)
    assert first in vocab.itos and model.calls == 1  # the prime, in one call
    rest = list(stream)
    assert len(rest) == 6 and all(piece in vocab.itos for piece in rest)
    assert model.calls == 7  # one T=1 step per further token, none after the last


def test_generate_restores_mode_and_grad_mode():
    model, vocab = tiny_lm(), CharVocab()
    model.train()
    stream = generate(model, vocab, "ab", length=5, seed=0)
    next(stream)
    assert not model.training  # eval while the generator is live
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    list(stream)
    assert model.training
    model.eval()
    list(generate(model, vocab, "ab", length=3, beam=2))
    assert not model.training


def random_markov(seed: int, V: int = 3) -> MarkovLM:
    gen = torch.Generator().manual_seed(seed)
    return MarkovLM(torch.log_softmax(3 * torch.randn(V, V, V, generator=gen), dim=-1))


@pytest.mark.parametrize("seed", range(10))
def test_beam_search_finds_the_most_likely_sequence(seed):
    model, vocab = random_markov(seed), CharVocab("ab")  # 3 tokens: "<unk>", "a", "b"
    # A flat first step (after the prime "ab") leaves the best sequence to its later
    # steps, which read the state of the right hypothesis only if it is reordered.
    model.table[1, 2] = -np.log(3)
    # 27 = 3**3 beams keep every prefix of 3 tokens, so the search over 4 is exhaustive.
    found = list(generate(model, vocab, "ab", length=4, beam=27))
    best = max(itertools.product(range(3), repeat=4), key=lambda seq: model.score([1, 2], seq))
    assert found == [vocab.token_text(i) for i in best]


def test_beam_search_beats_greedy():
    # After the prime "a", "a" (0.6) beats "b" (0.4); but after "a a" every token has
    # 1/3 while after "a b" another "b" has 0.98: greedy 0.6 / 3 = 0.2 < beam 0.392.
    probs = torch.full((3, 3, 3), 1 / 3)  # probs[prev, token] = next-token distribution
    probs[0, 1] = torch.tensor([1e-6, 0.6, 0.4 - 1e-6])  # the prime's step (prev = 0)
    probs[1, 2] = torch.tensor([0.01, 0.01, 0.98])
    model, vocab = MarkovLM(probs.log()), CharVocab("ab")
    greedy = list(generate(model, vocab, "a", length=2, temperature=0))
    beamed = list(generate(model, vocab, "a", length=2, beam=2))
    assert greedy[0] == "a" and beamed == ["b", "b"]
    greedy_score = model.score([1], [vocab.itos.index(piece) for piece in greedy])
    assert greedy_score == pytest.approx(np.log(0.2), rel=1e-5)
    assert model.score([1], [2, 2]) == pytest.approx(np.log(0.392), rel=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_beam_search_on_a_language_model_reorders_its_state(seed):
    model, vocab = tiny_lm(vocab_size=3, seed=seed), CharVocab("ab")
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(4)  # sharper dependence on the state than at initialisation
    prime = [1, 2, 1]

    def score(seq) -> float:
        ids = torch.tensor([*prime, *seq]).view(-1, 1)
        with torch.no_grad():
            logp = torch.log_softmax(model(ids)[0][:, 0], dim=-1)  # (T, V)
        return sum(float(logp[len(prime) - 1 + i, tok]) for i, tok in enumerate(seq))

    best = max(itertools.product(range(3), repeat=4), key=score)
    found = list(generate(model, vocab, "aba", length=4, beam=27))  # 27 = 3**3: exhaustive
    assert found == [vocab.token_text(i) for i in best]


def test_beam_yields_length_pieces():
    pieces = list(generate(tiny_lm(), CharVocab(), "ab", length=6, beam=3))
    assert len(pieces) == 6


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"length": 0}, r"length must be a positive integer"),
        ({"temperature": -0.5}, r"temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, r"temperature must be a finite number >= 0"),
        ({"top_k": 0}, r"top_k must be a positive integer or None"),
        ({"beam": 0}, r"beam must be a positive integer"),
        ({"seed": 1.5}, r"seed must be an integer or None"),
        ({"beam": 2, "top_k": 3}, r"top_k applies to sampling only"),
        ({"prime": "abzxz"}, r"prime has characters not in the vocabulary: 'x', 'z'; remove"),
        ({"prime": "a<unk>"}, r"not in the vocabulary: '<', '>', 'k', 'n', 'u'"),
        ({"prime": 5}, r"prime must be a string"),
    ],
)
def test_errors(options, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_lm(), CharVocab(), **options)


def test_literal_unk_prime_is_accepted_when_the_vocab_encodes_it():
    vocab = CharVocab(literal_unk=True)
    assert len(list(generate(tiny_lm(), vocab, "<unk>", length=3, seed=0))) == 3


def test_vocabulary_size_must_match_the_model():
    with pytest.raises(ValueError, match=r"predicts 5 tokens but the vocabulary has 4"):
        generate(tiny_lm(), CharVocab("abc"), "ab")
    with pytest.raises(ValueError, match=r"predicts 5 tokens but the vocabulary has 3"):
        next(generate(ConstantLM(torch.zeros(5)), CharVocab("ab"), "ab"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generate_runs_on_the_model_device():
    model, vocab = tiny_lm().cuda(), CharVocab()
    assert sample_text(model, vocab, "ab", length=20, seed=3) == sample_text(
        model, vocab, "ab", length=20, seed=3
    )
    assert sample_text(model, vocab, "ab", length=20, temperature=0) == greedy_by_hand(
        model.cpu(), vocab, "ab", 20
    )
    assert len(list(generate(model.cuda(), vocab, "ab", length=5, beam=3))) == 5
