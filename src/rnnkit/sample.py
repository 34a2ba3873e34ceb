"""Text from a language model: streaming sampling and beam search.

``generate(model, vocab, ...)`` yields the text of each token as it is produced;
``sample_text(...)`` joins it into one string. The model is anything with
``forward(tokens (T, B) int64, state=None) -> (logits (T, B, V), state)``; a
:class:`~rnnkit.models.LanguageModel` is stepped through its cells directly, which
skips the per-call validation and engine selection of its full forward. The
vocabulary needs only ``encode(text)``, ``decode(ids)``, ``token_text(id, previous)`` and
``len()``, with id 0 the unknown token ``"<unk>"``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from numbers import Real

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.layers import Recurrent
from rnnkit.models.language_model import LanguageModel

UNK_ID = 0
UNK_TEXT = "<unk>"

# step(tokens (B,) int64, state) -> (logits (B, V), state)
Step = Callable[[Tensor, object], tuple[Tensor, object]]


def generate(
    model: nn.Module,
    vocab,
    prime: str = "",
    length: int = 500,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    beam: int = 1,
) -> Iterator[str]:
    """Generate ``length`` tokens after ``prime``, yielding each token's text.

    The prime is run through the model in one call (``T = len(prime tokens)``,
    ``B = 1``). An empty prime starts from the state after one start token: the
    vocabulary's encoding of ``"\\n"`` if that is a single known token, else id 0
    (``"<unk>"``); the start token's text is not yielded.

    Sampling (``beam=1``) draws each token from ``softmax(logits / temperature)``,
    restricted to the ``top_k`` most likely tokens if given (a ``top_k`` at or above
    the vocabulary size keeps them all); ``temperature=0`` picks the most likely token
    (greedy). Tokens stream out one at a time. Draws come from a dedicated
    ``torch.Generator`` seeded with ``seed``, so the same seed gives the same text;
    ``seed=None`` takes a seed from torch's global generator (so ``torch.manual_seed``
    makes it reproducible too).

    Beam search (``beam > 1``) keeps the ``beam`` hypotheses with the highest total
    log-probability over ``length`` tokens and yields the best one's tokens only once
    the search is over (no streaming: any hypothesis may still lose). It is
    deterministic: ``temperature`` and ``seed`` are ignored, and ``top_k`` is refused.

    Errors in the arguments are raised by this call, before any token (a vocabulary
    whose size does not match a model without ``config.vocab_size`` is caught when the
    prime runs, at the first token). The model runs
    in eval mode under ``torch.inference_mode()`` on its own device while the
    generator is live; its previous train/eval mode comes back when the generator
    finishes or is closed.
    """
    _check_options(length, temperature, top_k, seed, beam)
    if not isinstance(prime, str):
        raise ValueError(f"prime must be a string, got {type(prime).__name__}")
    ids = _prime_ids(vocab, prime)  # (T,)
    config = getattr(model, "config", None)
    if isinstance(getattr(config, "vocab_size", None), int):
        _check_vocab_size(config.vocab_size, vocab)
    if beam > 1:
        return _beam_search(model, vocab, ids, length, beam)
    return _sample(model, vocab, ids, length, float(temperature), top_k, seed)


def sample_text(
    model: nn.Module,
    vocab,
    prime: str = "",
    length: int = 500,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    beam: int = 1,
) -> str:
    """The generated text as one string (``"".join(generate(...))``); the prime is not included."""
    return "".join(generate(model, vocab, prime, length, temperature, top_k, seed, beam))


def _check_options(length, temperature, top_k, seed, beam) -> None:
    """One-line ValueErrors for the numeric options."""

    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(length) or length < 1:
        raise ValueError(f"length must be a positive integer (tokens to generate), got {length!r}")
    if (
        not isinstance(temperature, Real)
        or isinstance(temperature, bool)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 for greedy), got {temperature!r}"
        )
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if seed is not None and not is_int(seed):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    if not is_int(beam) or beam < 1:
        raise ValueError(f"beam must be a positive integer (1 for sampling), got {beam!r}")
    if beam > 1 and top_k is not None:
        raise ValueError("top_k applies to sampling only; drop top_k or use beam=1")


def _prime_ids(vocab, prime: str) -> np.ndarray:
    """Token ids of the prime (T,), or the start token for an empty prime."""
    if not prime:
        newline = np.asarray(vocab.encode("\n")).reshape(-1)
        start = int(newline[0]) if newline.size == 1 and newline[0] != UNK_ID else UNK_ID
        return np.array([start], dtype=np.int64)
    ids = np.asarray(vocab.encode(prime), dtype=np.int64).reshape(-1)
    # A literal "<unk>" that the vocabulary encodes as id 0 is meant; any other id 0 is
    # text the vocabulary lacks.
    literal = list(np.asarray(vocab.encode(UNK_TEXT)).reshape(-1)) == [UNK_ID]
    allowed = prime.count(UNK_TEXT) if literal else 0
    if int((ids == UNK_ID).sum()) > allowed:
        rest = prime.replace(UNK_TEXT, "") if literal else prime
        missing = sorted({ch for ch in rest if (np.asarray(vocab.encode(ch)) == UNK_ID).any()})
        if missing:
            listed = ", ".join(repr(ch) for ch in missing)
            raise ValueError(f"prime has characters not in the vocabulary: {listed}; remove them")
        raise ValueError("prime has text the vocabulary does not know; remove or rephrase it")
    if ids.size == 0:
        raise ValueError("prime encodes to no tokens; give a longer prime or an empty one")
    return ids


def _device(model: nn.Module) -> torch.device:
    tensors = itertools.chain(model.parameters(), model.buffers())
    first = next(tensors, None)
    return first.device if first is not None else torch.device("cpu")


def _stepper(model: nn.Module) -> Step:
    """One-token step of ``model`` in eval mode: (B,) tokens -> (B, V) logits."""
    rnn = getattr(model, "rnn", None)
    layers = getattr(rnn, "layers", ())
    if not (
        isinstance(model, LanguageModel)
        and all(isinstance(layer, Recurrent) and not layer.reverse for layer in layers)
    ):

        def forward_step(tokens: Tensor, state):
            logits, state = model(tokens.view(1, -1), state)  # (1, B, V)
            return logits[0], state

        return forward_step

    # In eval mode a LanguageModel step is embedding -> each layer's cell -> head (the
    # dropouts are off); calling the cells directly saves the checks and engine choice
    # of the full forward, and torch's sequence kernels are slow for a single step.
    cells = [layer.cell for layer in layers]

    def cell_step(tokens: Tensor, state):
        x = model.embed(tokens)  # (B, E)
        finals = []
        for cell, cell_state in zip(cells, state, strict=True):
            x, new = cell(x, cell_state)  # (B, H)
            finals.append(new)
        return model.head(x), tuple(finals)  # (B, V)

    return cell_step


def _start(model: nn.Module, vocab, ids: np.ndarray) -> tuple[Tensor, object, torch.device]:
    """Run the prime in one call: last logits (1, V), state, device."""
    device = _device(model)
    tokens = torch.as_tensor(ids, device=device).view(-1, 1)  # (T, 1)
    logits, state = model(tokens)  # (T, 1, V)
    _check_vocab_size(logits.shape[-1], vocab)
    return logits[-1], state, device


def _check_vocab_size(model_size: int, vocab) -> None:
    if model_size != len(vocab):
        raise ValueError(
            f"the model predicts {model_size} tokens but the vocabulary has {len(vocab)}; "
            f"use the vocabulary the model was trained with"
        )


def _sample(
    model: nn.Module,
    vocab,
    ids: np.ndarray,
    length: int,
    temperature: float,
    top_k: int | None,
    seed: int | None,
) -> Iterator[str]:
    """Streaming sampler; see :func:`generate`."""
    was_training = model.training
    model.eval()
    try:
        # inference_mode is entered per step, never held across a yield, so the caller's
        # code between tokens keeps its own grad mode.
        with torch.inference_mode():
            logits, state, device = _start(model, vocab, ids)  # (1, V)
            step = _stepper(model)
            generator = torch.Generator(device=device)
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            generator.manual_seed(seed)
            k = None if top_k is None or top_k >= logits.shape[-1] else top_k
            token = None
            previous = int(ids[-1])  # word vocabularies space a token by the one before
        for _ in range(length):
            with torch.inference_mode():
                if token is not None:  # the step for a token runs once its text is out
                    logits, state = step(token, state)  # (1, V)
                token = _draw(logits, temperature, k, generator)  # (1,)
                index = int(token.item())
            yield vocab.token_text(index, previous)
            previous = index
    finally:
        model.train(was_training)


def _draw(logits: Tensor, temperature: float, k: int | None, generator) -> Tensor:
    """One token id (1,) from logits (1, V)."""
    logits = logits[0]  # (V,)
    if temperature == 0:
        return logits.argmax().view(1)
    if k is None:
        probs = torch.softmax(logits / temperature, dim=-1)  # (V,)
        return torch.multinomial(probs, 1, generator=generator)
    top, where = logits.topk(k)  # (k,), (k,)
    probs = torch.softmax(top / temperature, dim=-1)
    return where[torch.multinomial(probs, 1, generator=generator)]


def _reorder(state, index: Tensor):
    """Every tensor in a nested state, rows picked by ``index`` (batch first)."""
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, (tuple, list)):
        return type(state)(_reorder(s, index) for s in state)
    if state is None:
        return None
    raise ValueError(
        f"beam search cannot reorder a model state holding {type(state).__name__}; use beam=1"
    )


def _beam_search(model: nn.Module, vocab, ids: np.ndarray, length: int, beam: int) -> Iterator[str]:
    """Beam search; yields the best hypothesis' tokens once it is complete."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            best = _search(model, vocab, ids, length, beam)
    finally:
        model.train(was_training)
    previous = int(ids[-1])
    for index in best:
        yield vocab.token_text(index, previous)
        previous = index


def _search(model: nn.Module, vocab, ids: np.ndarray, length: int, beam: int) -> list[int]:
    """Token ids of the highest-scoring hypothesis of ``length`` tokens."""
    logits, state, device = _start(model, vocab, ids)  # (1, V)
    step = _stepper(model)
    V = logits.shape[-1]
    logp = torch.log_softmax(logits.float(), dim=-1)  # (W, V), W = 1 at first
    scores = torch.zeros(1, device=device)  # (W,) total log-probability of each hypothesis
    history = torch.empty(1, 0, dtype=torch.long, device=device)  # (W, t)
    for t in range(length):
        total = (scores[:, None] + logp).flatten()  # (W * V,)
        scores, flat = total.topk(min(beam, total.numel()))  # sorted, best first
        origin, token = flat // V, flat % V  # (W,) parent hypothesis and its next token
        history = torch.cat([history.index_select(0, origin), token[:, None]], dim=1)
        if t + 1 < length:
            logits, state = step(token, _reorder(state, origin))  # (W, V)
            logp = torch.log_softmax(logits.float(), dim=-1)
    return history[0].tolist()


__all__ = ["generate", "sample_text"]
