"""Decoding a :class:`~rnnkit.models.seq2seq.Seq2Seq`: greedy, sampling, beam search, scoring.

Every function decodes a whole batch of inputs at once (beams flattened into the batch),
in eval mode without gradients, and returns one :class:`Hypothesis` per input. A
hypothesis ends at ``</s>`` (``END_ID``) or is cut after ``max_len`` tokens; its
``length`` counts the tokens emitted, ``</s>`` included, and its ``log_prob`` is the
model's ``Σ_t log p(y_t | y_<t, x)`` over those same tokens, which :func:`score` recomputes
with teacher forcing.

Beam search ranks finished hypotheses by ``score = log_prob / length ** length_penalty``
(``length_penalty`` is α: 0 ranks by log-probability, which favours short outputs;
α ≈ 0.6–1 evens that out).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.data.pairs import END_ID, PAD_ID, START_ID
from rnnkit.models.seq2seq import Memory, Seq2Seq, check_tokens, repeat_rows, select_rows


@dataclass
class Hypothesis:
    """One decoded output.

    ``tokens``: the ids without ``<s>`` and ``</s>``; ``log_prob``: total log-probability of
    the emitted tokens (``</s>`` included when ``finished``); ``score``: ``log_prob /
    length ** length_penalty`` (``log_prob`` itself outside beam search); ``finished``:
    ended with ``</s>`` (False: cut at ``max_len``); ``attention``: ``(length, S)`` weights
    over this input's ``S`` real source steps, one row per emitted token, when asked.
    """

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool
    attention: Tensor | None = None

    @property
    def length(self) -> int:
        return len(self.tokens) + int(self.finished)


# ---- checks and set-up ---------------------------------------------------------------


def _check_int(name: str, value, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _check_model(model) -> Seq2Seq:
    if not isinstance(model, Seq2Seq):
        raise ValueError(f"expected a Seq2Seq model, got {type(model).__name__}")
    return model


@contextmanager
def _inference(model: Seq2Seq):
    """Eval mode and no gradients for the duration; the training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _source_lengths(memory: Memory) -> list[int]:
    return memory.mask.sum(1).tolist()


# ---- greedy and sampling ---------------------------------------------------------------


def _left_to_right(
    model: Seq2Seq,
    src: Tensor,
    src_lengths,
    max_len: int,
    pick: Callable[[Tensor], Tensor],
    return_attention: bool,
) -> list[Hypothesis]:
    """Decode every input one token at a time, choosing each with ``pick(log_probs)``."""
    with _inference(model):
        memory = model.encode(src, src_lengths)
        B = memory.values.shape[0]
        device = memory.values.device
        state = memory.state
        prev = torch.full((B,), START_ID, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        length = torch.full((B,), max_len, dtype=torch.long, device=device)
        tokens, token_lps, alphas = [], [], []
        for t in range(max_len):
            log_probs, state, alpha = model.step(prev, state, memory)  # (B, V)
            prev = pick(log_probs)  # (B,)
            tokens.append(prev)
            token_lps.append(log_probs.gather(1, prev[:, None])[:, 0])
            alphas.append(alpha)
            ended = ~done & (prev == END_ID)
            length[ended] = t + 1
            done |= ended
            if bool(done.all()):
                break
        tokens = torch.stack(tokens, 1).cpu()  # (B, T)
        token_lps = torch.stack(token_lps, 1)  # (B, T)
        steps = torch.arange(token_lps.shape[1], device=device)
        log_prob = token_lps.masked_fill(steps[None, :] >= length[:, None], 0.0).sum(1)
        attention = (
            torch.stack(alphas, 1).cpu() if return_attention and alphas[0] is not None else None
        )
        finished, length = done.cpu().tolist(), length.cpu().tolist()
        src_len = _source_lengths(memory)
        out = []
        for b in range(B):
            n = length[b] - int(finished[b])  # tokens before </s>
            lp = float(log_prob[b])
            att = attention[b, : length[b], : src_len[b]].clone() if attention is not None else None
            out.append(Hypothesis(tokens[b, :n].tolist(), lp, lp, finished[b], att))
        return out


def greedy(
    model: Seq2Seq, src: Tensor, src_lengths, *, max_len: int, return_attention: bool = False
) -> list[Hypothesis]:
    """Most probable token at each step: ``y_t = argmax_v log p(v | y_<t, x)``."""
    _check_model(model)
    _check_int("max_len", max_len)
    return _left_to_right(
        model, src, src_lengths, max_len, lambda lp: lp.argmax(-1), return_attention
    )


def sample(
    model: Seq2Seq,
    src: Tensor,
    src_lengths,
    *,
    max_len: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Tokens drawn from ``softmax(log p / temperature)`` with ``generator`` (reproducible
    when seeded); ``log_prob`` is the model's own (temperature 1) log-probability."""
    _check_model(model)
    _check_int("max_len", max_len)
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")

    def draw(log_probs: Tensor) -> Tensor:
        probs = torch.softmax(log_probs / temperature, dim=-1)  # (B, V)
        if generator is not None:
            probs = probs.to(generator.device)
        drawn = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return drawn.to(log_probs.device)

    return _left_to_right(model, src, src_lengths, max_len, draw, return_attention)


# ---- beam search ---------------------------------------------------------------------


def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths,
    *,
    beam: int,
    max_len: int,
    length_penalty: float = 0.0,
    return_all: bool = False,
    return_attention: bool = False,
) -> list[Hypothesis] | list[list[Hypothesis]]:
    """Beam search over ``beam`` hypotheses per input, all inputs at once.

    At step ``t`` every live hypothesis ``h`` is extended by every token ``v``
    (``log_prob(h v) = log_prob(h) + log p(v | h, x)``) and the ``2 * beam`` best
    candidates per input are taken, best first. A candidate ending in ``</s>`` among the
    first ``beam`` is finished (moved out of the beam); the first ``beam`` candidates that
    do not end in ``</s>`` live on. An input stops once ``beam`` hypotheses have finished
    and no live one can still beat the best finished score (a live ``log_prob`` only falls,
    so the most it can reach is ``log_prob / max_len ** length_penalty``); after
    ``max_len`` steps the live ones are kept as cut hypotheses. The best is the one with
    the highest ``score = log_prob / length ** length_penalty``.

    With ``length_penalty=0``, ``beam=1`` is greedy decoding (with α > 0 it may go on past
    greedy's ``</s>`` to a longer output that scores higher). A beam of at least
    ``V ** max_len`` keeps every candidate: exhaustive search.

    Returns the best hypothesis per input, or with ``return_all`` every hypothesis found
    per input (finished, then cut ones at ``max_len``), best first.
    """
    _check_model(model)
    K = _check_int("beam", beam)
    _check_int("max_len", max_len)
    if (
        not isinstance(length_penalty, (int, float))
        or isinstance(length_penalty, bool)
        or not (math.isfinite(length_penalty) and length_penalty >= 0)
    ):
        raise ValueError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    alpha_lp = float(length_penalty)
    with _inference(model):
        memory = model.encode(src, src_lengths)
        B = memory.values.shape[0]
        device = memory.values.device
        src_len = _source_lengths(memory)
        memory = repeat_rows(memory, K)  # row b*K + k: beam k of input b
        state = memory.state
        # Only beam 0 is live at first: the others start at -inf so each input's first
        # expansion is not counted K times.
        total = torch.full((B, K), float("-inf"), dtype=memory.values.dtype, device=device)
        total[:, 0] = 0.0
        prev = torch.full((B * K,), START_ID, dtype=torch.long, device=device)
        history = torch.zeros(B * K, 0, dtype=torch.long, device=device)  # tokens so far
        attn_history = None
        pools: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = [False] * B

        def hypothesis(b, tokens, lp, finished, att) -> Hypothesis:
            length = len(tokens) + int(finished)
            att = att[:, : src_len[b]].cpu().clone() if att is not None else None
            return Hypothesis(tokens, lp, lp / length**alpha_lp, finished, att)

        for _ in range(max_len):
            log_probs, state, alpha = model.step(prev, state, memory)  # (B*K, V)
            V = log_probs.shape[-1]
            if return_attention and alpha is not None:
                step_attn = alpha[:, None, :]  # (B*K, 1, S)
                attn_history = (
                    step_attn if attn_history is None else torch.cat([attn_history, step_attn], 1)
                )
            candidates = (total.reshape(B * K, 1) + log_probs).reshape(B, K * V)
            top, index = candidates.topk(min(2 * K, K * V), dim=1)  # (B, n), best first
            source, token = index // V, index % V  # beam it extends, token it adds
            ends = token == END_ID
            # Finish the </s> candidates among the first K (finite: from a live beam).
            hits = (ends[:, :K] & torch.isfinite(top[:, :K])).nonzero().tolist()
            for b, r in hits:
                if done[b]:
                    continue
                row = b * K + int(source[b, r])
                att = attn_history[row] if attn_history is not None else None
                pools[b].append(hypothesis(b, history[row].tolist(), float(top[b, r]), True, att))
            # The first K candidates not ending in </s> live on (there are at least K:
            # at most one </s> per beam among the 2K).
            keep = torch.argsort(ends.to(torch.int8), dim=1, stable=True)[:, :K]  # (B, K)
            total = top.gather(1, keep)
            rows = (torch.arange(B, device=device)[:, None] * K + source.gather(1, keep)).reshape(
                -1
            )  # (B*K,)
            prev = token.gather(1, keep).reshape(-1)
            state = select_rows(state, rows)
            history = torch.cat([history[rows], prev[:, None]], dim=1)  # (B*K, t+1)
            if attn_history is not None:
                attn_history = attn_history[rows]
            # An input is done when K hypotheses have finished and no live one can still
            # overtake the best: a live log_prob only falls, so its best reachable score
            # is log_prob / max_len ** length_penalty.
            reach = (total.max(1).values / float(max_len) ** alpha_lp).tolist()
            for b in range(B):
                best = max((h.score for h in pools[b]), default=-math.inf)
                done[b] = done[b] or (len(pools[b]) >= K and reach[b] <= best)
                done[b] = done[b] or reach[b] == -math.inf
            if all(done):
                break
        else:  # max_len reached: the live beams of unfinished inputs are cut hypotheses
            for b in range(B):
                if done[b]:
                    continue
                for k in range(K):
                    if math.isfinite(float(total[b, k])):
                        row = b * K + k
                        att = attn_history[row] if attn_history is not None else None
                        pools[b].append(
                            hypothesis(b, history[row].tolist(), float(total[b, k]), False, att)
                        )
        for pool in pools:
            pool.sort(key=lambda h: h.score, reverse=True)
        return pools if return_all else [pool[0] for pool in pools]


# ---- scoring ---------------------------------------------------------------------------


def _padded_targets(targets, target_lengths, batch: int) -> tuple[Tensor, Tensor]:
    if isinstance(targets, Tensor):
        if targets.dim() != 2 or targets.dtype != torch.long:
            raise ValueError(
                f"expected targets as an int64 tensor (B, U), got "
                f"{tuple(targets.shape)} {targets.dtype}"
            )
        U = targets.shape[1]
        if target_lengths is None:
            lengths = torch.full((targets.shape[0],), U, dtype=torch.long)
        else:
            lengths = torch.as_tensor(target_lengths).detach().cpu().long()
        padded = targets.cpu()
    else:
        if target_lengths is not None:
            raise ValueError("target_lengths goes with a padded tensor of targets; drop it")
        rows = [torch.as_tensor(list(t), dtype=torch.long) for t in targets]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        U = int(lengths.max()) if len(rows) else 0
        padded = torch.full((len(rows), max(U, 1)), PAD_ID, dtype=torch.long)
        for b, r in enumerate(rows):
            padded[b, : len(r)] = r
    if padded.shape[0] != batch or lengths.shape != (batch,):
        raise ValueError(f"expected {batch} targets (one per source), got {padded.shape[0]}")
    if int(lengths.min()) < 1 or int(lengths.max()) > padded.shape[1]:
        raise ValueError(f"every target needs 1..{padded.shape[1]} tokens (end it with END_ID)")
    return padded, lengths


def score(
    model: Seq2Seq,
    src: Tensor,
    src_lengths,
    targets: Tensor | Sequence[Sequence[int]],
    target_lengths=None,
) -> Tensor:
    """Total log-probability ``Σ_t log p(y_t | y_<t, x)`` of each given target ``(B,)``.

    ``targets``: one id sequence per input (without ``<s>``; end it with ``</s>`` to
    count its probability, as a finished hypothesis does), or a padded int64 ``(B, U)``
    tensor with ``target_lengths`` (default: all ``U``). Computed teacher-forced.
    """
    _check_model(model)
    B = check_tokens("src", src, model.encoder.vocab_size).shape[0]
    padded, lengths = _padded_targets(targets, target_lengths, B)
    V = model.decoder.vocab_size
    if int(padded.min()) < 0 or int(padded.max()) >= V:
        raise ValueError(f"target ids must be in 0..{V - 1}")
    tgt_in = torch.cat([torch.full((B, 1), START_ID), padded[:, :-1]], dim=1)  # (B, U)
    with _inference(model):
        logits = model(src, src_lengths, tgt_in)  # (B, U, V)
        log_probs = torch.log_softmax(logits, dim=-1)
        padded = padded.to(logits.device)
        token_lps = log_probs.gather(2, padded[..., None])[..., 0]  # (B, U)
        steps = torch.arange(padded.shape[1], device=logits.device)
        real = steps[None, :] < lengths.to(logits.device)[:, None]
        return token_lps.masked_fill(~real, 0.0).sum(1).cpu()


__all__ = ["Hypothesis", "beam_search", "greedy", "sample", "score"]
