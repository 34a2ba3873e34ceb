"""``Seq2Seq``: encoder–decoder sequence-to-sequence model, with or without attention.

The encoder (embedding → recurrent stack, optionally bidirectional) reads the source;
a bridge turns its final state into the decoder's initial state; the decoder
(embedding → one-way recurrent stack) predicts the target one token at a time from the
previous token, its state and, with attention, a context vector over the encoder's
outputs. Encoder and decoder may differ in cell kind, hidden size and depth.

Shapes: ``B`` sequences, ``S`` source steps, ``U`` target steps, ``E`` embedding width,
``O`` encoder output width (``2 H_enc`` when bidirectional), ``H`` decoder hidden size,
``V`` target vocabulary. Batches are batch-major; the stacks run time-major inside.

Step API for decoding (``rnnkit.models.decode``): ``encode`` gives a :class:`Memory`
(the encoder's outputs, the padding mask and the decoder's initial :class:`DecoderState`);
``step`` advances every sequence by one token; ``select_rows`` / ``repeat_rows`` reorder
or repeat states and memories along the batch (beams flattened into the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.cells.base import check_choice, check_positive
from rnnkit.data.pairs import PAD_ID
from rnnkit.layers.regularizers import dropout_mask
from rnnkit.models.attention import BahdanauAttention, LuongAttention
from rnnkit.models.builder import check_stack_settings
from rnnkit.models.seq2seq_parts import (
    BRIDGES,
    Bridge,
    Decoder,
    DecoderState,
    Encoder,
    Memory,
    check_tokens,
    repeat_rows,
    select_rows,
)
from rnnkit.settings import JSONSettings

ATTENTIONS = {
    "none": "no attention: the context is the encoder's final state, through the bridge",
    "bahdanau": "additive attention from the decoder's previous state, context fed as input",
    "luong": "multiplicative ('general') attention on the decoder's output, h̃ = tanh(W_c[c; s])",
}


@dataclass
class Seq2SeqConfig(JSONSettings):
    """Everything needed to rebuild a :class:`Seq2Seq` (saved as JSON in checkpoints)."""

    settings_kind = "seq2seq"

    src_vocab_size: int  # source token ids 0..src_vocab_size-1
    tgt_vocab_size: int  # target token ids, the specials <pad> <s> </s> <unk> first
    attention: str = "bahdanau"  # none | bahdanau | luong
    attention_size: int | None = None  # bahdanau's A; None: decoder_hidden_size
    input_feeding: bool = True  # luong: feed h̃_{t-1} into the next step
    bridge: str = "auto"  # auto | linear
    encoder_cell: str = "lstm"  # one of CELL_KINDS
    encoder_embedding_size: int = 64
    encoder_hidden_size: int = 128  # units per layer and direction
    encoder_layers: int = 1
    bidirectional: bool = False
    encoder_dropout: float = 0.0  # variational: on embeddings and between layers
    encoder_engine: str = "auto"
    decoder_cell: str = "lstm"
    decoder_embedding_size: int = 64
    decoder_hidden_size: int = 128
    decoder_layers: int = 1
    decoder_dropout: float = 0.0  # variational: on inputs, between layers and on the head input
    decoder_engine: str = "auto"

    def __post_init__(self) -> None:
        if self.attention is None:
            self.attention = "none"
        check_positive("src_vocab_size", self.src_vocab_size)
        check_positive("tgt_vocab_size", self.tgt_vocab_size)
        if self.tgt_vocab_size < 4:
            raise ValueError(
                f"tgt_vocab_size must be at least 4 (ids 0-3 are <pad> <s> </s> <unk>), "
                f"got {self.tgt_vocab_size}"
            )
        check_choice("attention", self.attention, ATTENTIONS)
        if self.attention_size is not None:
            check_positive("attention_size", self.attention_size)
        check_choice("bridge", self.bridge, BRIDGES)
        for name in ("input_feeding", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for side in ("encoder", "decoder"):
            check_positive(f"{side}_embedding_size", getattr(self, f"{side}_embedding_size"))
            check_stack_settings(
                kind=getattr(self, f"{side}_cell"),
                hidden_size=getattr(self, f"{side}_hidden_size"),
                num_layers=getattr(self, f"{side}_layers"),
                dropout=getattr(self, f"{side}_dropout"),
                state_dropout=0.0,
                layer_norm=False,
                engine=getattr(self, f"{side}_engine"),
            )

    @property
    def encoder_output_size(self) -> int:
        return self.encoder_hidden_size * (2 if self.bidirectional else 1)

    @property
    def context_size(self) -> int:
        """Extra features the decoder reads with each token: ``c_t`` or ``h̃_{t-1}``."""
        if self.attention == "bahdanau":
            return self.encoder_output_size
        if self.attention == "luong" and self.input_feeding:
            return self.decoder_hidden_size
        return 0


# ---- the model ---------------------------------------------------------------------


class Seq2Seq(nn.Module):
    r"""Encoder–decoder model: ``Seq2Seq(encoder, decoder, attention=None)``.

    Encoder: ``(h_{1..S}, final) = enc(E_src[x_{1..S}])``; bridge:
    ``s_0 = bridge(final)`` (see :class:`Bridge`). Decoder step ``t`` reads the previous
    token ``y_{t-1}`` (``<s>`` first; the gold token when teacher-forced):

    - ``attention=None`` (Sutskever et al. 2014): the context is the encoder's final
      state, through ``s_0``; ``(s_t, ·) = dec(E[y_{t-1}], ·)``, ``o_t = s_t``.
    - ``"bahdanau"``: ``c_t = attend(s_{t-1}, h)`` (additive, see
      :class:`~rnnkit.models.attention.BahdanauAttention`; ``s_{t-1}`` is the top layer's
      ``h``), ``(s_t, ·) = dec([E[y_{t-1}]; c_t], ·)``, ``o_t = [s_t; c_t]``.
    - ``"luong"``: ``(s_t, ·) = dec([E[y_{t-1}]; h̃_{t-1}], ·)`` (``h̃_0 = 0``; without
      ``input_feeding`` just ``E[y_{t-1}]``), ``c_t = attend(s_t, h)`` ("general" score),
      ``o_t = h̃_t = tanh(W_c [c_t; s_t])``.

    Then ``logits_t = W_out dropout(o_t) + b_out`` (``W_out = self.head``). The
    attention scores padding ``-inf``: its weight is exactly 0.

    Args:
        encoder: an :class:`Encoder`.
        decoder: a :class:`Decoder`; its stack is rebuilt (fresh weights) when its
            ``context_size`` does not match what the attention feeds it.
        attention: None (or ``"none"``), ``"bahdanau"`` or ``"luong"``.
        attention_size: Bahdanau's hidden width ``A`` (default: the decoder's hidden size).
        input_feeding: Luong only: feed ``h̃_{t-1}`` into step ``t``.
        bridge: ``"auto"`` or ``"linear"`` (see :class:`Bridge`).
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        attention: str | None = None,
        *,
        attention_size: int | None = None,
        input_feeding: bool = True,
        bridge: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder) or not isinstance(decoder, Decoder):
            raise ValueError(
                f"expected an Encoder and a Decoder, got {type(encoder).__name__} and "
                f"{type(decoder).__name__}"
            )
        self.config = Seq2SeqConfig(  # validates the whole combination
            src_vocab_size=encoder.vocab_size,
            tgt_vocab_size=decoder.vocab_size,
            attention="none" if attention is None else attention,
            attention_size=attention_size,
            input_feeding=input_feeding,
            bridge=bridge,
            encoder_cell=encoder.cell,
            encoder_embedding_size=encoder.embedding_size,
            encoder_hidden_size=encoder.hidden_size,
            encoder_layers=encoder.num_layers,
            bidirectional=encoder.bidirectional,
            encoder_dropout=encoder.dropout,
            encoder_engine=encoder.engine,
            decoder_cell=decoder.cell,
            decoder_embedding_size=decoder.embedding_size,
            decoder_hidden_size=decoder.hidden_size,
            decoder_layers=decoder.num_layers,
            decoder_dropout=decoder.dropout,
            decoder_engine=decoder.engine,
        )
        cfg = self.config
        self.encoder = encoder
        decoder.set_context_size(cfg.context_size)
        self.decoder = decoder
        self.bridge = Bridge(encoder, decoder, cfg.bridge)
        width, H = encoder.output_size, decoder.hidden_size  # O and H
        if cfg.attention == "bahdanau":
            self.attention = BahdanauAttention(H, width, cfg.attention_size or H)
        elif cfg.attention == "luong":
            self.attention = LuongAttention(H, width)
        else:
            self.attention = None
        out = H + width if cfg.attention == "bahdanau" else H  # o_t = [s_t; c_t] or s_t or h̃_t
        self.head = nn.Linear(out, decoder.vocab_size)

    @classmethod
    def from_config(cls, config: Seq2SeqConfig) -> Seq2Seq:
        """A fresh model built from ``config`` (e.g. ``Seq2SeqConfig.from_dict(saved)``)."""
        if not isinstance(config, Seq2SeqConfig):
            raise ValueError(f"expected a Seq2SeqConfig, got {type(config).__name__}")
        c = config
        encoder = Encoder(
            c.src_vocab_size,
            c.encoder_embedding_size,
            c.encoder_hidden_size,
            c.encoder_layers,
            cell=c.encoder_cell,
            bidirectional=c.bidirectional,
            dropout=c.encoder_dropout,
            engine=c.encoder_engine,
        )
        decoder = Decoder(
            c.tgt_vocab_size,
            c.decoder_embedding_size,
            c.decoder_hidden_size,
            c.decoder_layers,
            cell=c.decoder_cell,
            dropout=c.decoder_dropout,
            engine=c.decoder_engine,
            context_size=c.context_size,
        )
        return cls(
            encoder,
            decoder,
            None if c.attention == "none" else c.attention,
            attention_size=c.attention_size,
            input_feeding=c.input_feeding,
            bridge=c.bridge,
        )

    @property
    def attention_kind(self) -> str:
        return self.config.attention

    @property
    def whole_sequence(self) -> bool:
        """Whether teacher-forced decoding can run all steps in one ``Stacked.run`` call
        (no step reads anything computed at the step before but the recurrent state)."""
        cfg = self.config
        return cfg.attention == "none" or (cfg.attention == "luong" and not cfg.input_feeding)

    # ---- step API ---------------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths) -> Memory:
        """Run the encoder: ``src`` ``(B, S)`` int64, ``src_lengths`` ``(B,)`` → :class:`Memory`."""
        values, final, lengths = self.encoder(src, src_lengths)  # (B, S, O)
        S = values.shape[1]
        mask = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
        keys = self.attention.keys(values) if self.attention is not None else None
        feed = None
        if self.config.context_size and self.attention_kind == "luong":
            feed = values.new_zeros(values.shape[0], self.decoder.hidden_size)  # h̃_0 = 0
        state = DecoderState(self.bridge(final), feed)
        return Memory(values, keys, mask.to(values.device), state)

    def step(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoder step for every row: ``prev_tokens`` ``(B,)`` →
        ``(log_probs (B, V), state, attention (B, S) or None)``. No dropout: for decoding."""
        logits, state, alpha = self._step(prev_tokens, state, memory, None, None)
        return torch.log_softmax(logits, dim=-1), state, alpha

    def _step(self, prev, state, memory, masks, out_mask):
        kind = self.attention_kind
        e = self.decoder.embedding(prev)  # (B, E)
        alpha = None
        if kind == "bahdanau":
            s_prev = state.rnn[-1][0]  # top layer's h_{t-1}: (B, H)
            c, alpha = self.attention(s_prev[:, None], memory.keys, memory.values, memory.mask)
            c, alpha = c[:, 0], alpha[:, 0]  # (B, O), (B, S)
            x = torch.cat([e, c], dim=-1)
        elif state.feed is not None:
            x = torch.cat([e, state.feed], dim=-1)  # input feeding: [E y_{t-1}; h̃_{t-1}]
        else:
            x = e
        s, rnn = self.decoder.step(x, state.rnn, masks)  # (B, H)
        feed = None
        if kind == "bahdanau":
            o = torch.cat([s, c], dim=-1)  # (B, H + O)
        elif kind == "luong":
            c, alpha = self.attention(s[:, None], memory.keys, memory.values, memory.mask)
            c, alpha = c[:, 0], alpha[:, 0]
            o = self.attention.attentional(c, s)  # h̃_t: (B, H)
            feed = o if state.feed is not None else None
        else:
            o = s
        if out_mask is not None:
            o = o * out_mask
        return self.head(o), DecoderState(rnn, feed), alpha

    # ---- teacher forcing ----------------------------------------------------------------

    def forward(
        self,
        src: Tensor,
        src_lengths,
        tgt_in: Tensor,
        *,
        sampling_ratio: float = 0.0,
        generator: torch.Generator | None = None,
        return_attention: bool = False,
    ):
        """Logits ``(B, U, V)`` for every target step (and attention ``(B, U, S)`` if asked).

        ``tgt_in`` ``(B, U)`` is ``<s> y_1 … y_{U-1}`` (padded): teacher forcing. With
        ``sampling_ratio`` ``p > 0`` (scheduled sampling, Bengio et al. 2015), at each step
        ``t ≥ 1`` each sequence is fed, with probability ``p`` drawn from ``generator``, the
        model's own greedy prediction of step ``t - 1`` instead of ``tgt_in[:, t]``.
        """
        if not isinstance(sampling_ratio, (int, float)) or not 0.0 <= sampling_ratio <= 1.0:
            raise ValueError(f"sampling_ratio must be in [0, 1], got {sampling_ratio!r}")
        if return_attention and self.attention is None:
            raise ValueError("the model has no attention; drop return_attention")
        tgt_in = check_tokens("tgt_in", tgt_in, self.decoder.vocab_size)
        memory = self.encode(src, src_lengths)
        if tgt_in.shape[0] != memory.values.shape[0]:
            raise ValueError(
                f"src holds {memory.values.shape[0]} sequences but tgt_in {tgt_in.shape[0]}"
            )
        tgt_in = tgt_in.to(memory.values.device)
        if sampling_ratio == 0 and self.whole_sequence:
            logits, alpha = self._decode_whole(tgt_in, memory)
        else:
            logits, alpha = self._decode_steps(tgt_in, memory, float(sampling_ratio), generator)
        return (logits, alpha) if return_attention else logits

    def _output_mask(self, batch: int, like: Tensor) -> Tensor | None:
        p = self.decoder.dropout
        if not (self.training and p):
            return None
        return dropout_mask(p, (batch, self.head.in_features), like)  # one per sequence

    def _decode_whole(self, tgt_in: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """All ``U`` steps through one ``Stacked.run`` call (the fast engines)."""
        x = self.decoder.embedding(tgt_in).transpose(0, 1)  # (U, B, E)
        s, _ = self.decoder.rnn.run(x, memory.state.rnn, None)  # (U, B, H)
        s = s.transpose(0, 1)  # (B, U, H)
        alpha = None
        if self.attention is not None:  # luong without input feeding
            c, alpha = self.attention(s, memory.keys, memory.values, memory.mask)  # (B, U, O)
            o = self.attention.attentional(c, s)  # h̃: (B, U, H)
        else:
            o = s
        out_mask = self._output_mask(o.shape[0], o)
        if out_mask is not None:
            o = o * out_mask[:, None, :]  # (B, 1, F): the same mask at every step
        return self.head(o), alpha  # (B, U, V)

    def _decode_steps(self, tgt_in, memory, sampling_ratio, generator):
        B, U = tgt_in.shape
        like = memory.values
        masks = self.decoder.dropout_masks(B, like)
        out_mask = self._output_mask(B, like)
        state, prev = memory.state, tgt_in[:, 0]
        logits, alphas = [], []
        for t in range(U):
            if t > 0:
                prev = tgt_in[:, t]
                if sampling_ratio > 0:
                    device = generator.device if generator is not None else "cpu"
                    coin = torch.rand(B, generator=generator, device=device) < sampling_ratio
                    own = logits[-1].detach().argmax(-1)  # greedy prediction of step t - 1
                    prev = torch.where(coin.to(prev.device), own, prev)
            logit, state, alpha = self._step(prev, state, memory, masks, out_mask)
            logits.append(logit)
            alphas.append(alpha)
        alpha = torch.stack(alphas, dim=1) if self.attention is not None else None  # (B, U, S)
        return torch.stack(logits, dim=1), alpha  # (B, U, V)

    def loss(
        self,
        batch: dict[str, Tensor],
        sampling_ratio: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mean cross-entropy (nats) over the real target tokens of a batch
        ``{"src", "src_lengths", "tgt_in", "tgt_out"}``; ``<pad>`` in ``tgt_out`` is ignored."""
        for key in ("src", "src_lengths", "tgt_in", "tgt_out"):
            if key not in batch:
                raise ValueError(
                    f"the batch has no {key!r}; expected src, src_lengths, tgt_in, tgt_out"
                )
        logits = self(
            batch["src"],
            batch["src_lengths"],
            batch["tgt_in"],
            sampling_ratio=sampling_ratio,
            generator=generator,
        )
        target = batch["tgt_out"].to(logits.device)
        if target.shape != logits.shape[:2]:
            raise ValueError(
                f"tgt_out has shape {tuple(target.shape)} but tgt_in {tuple(logits.shape[:2])}"
            )
        V = logits.shape[-1]
        return nn.functional.cross_entropy(
            logits.reshape(-1, V), target.reshape(-1), ignore_index=PAD_ID
        )


def seq2seq_loss(model: Seq2Seq, batch: dict[str, Tensor]) -> Tensor:
    """``model.loss(batch)``: the trainer's ``loss_fn`` (teacher forcing)."""
    return model.loss(batch)


__all__ = [
    "ATTENTIONS",
    "BRIDGES",
    "Bridge",
    "Decoder",
    "DecoderState",
    "Encoder",
    "Memory",
    "Seq2Seq",
    "Seq2SeqConfig",
    "repeat_rows",
    "select_rows",
    "seq2seq_loss",
]
