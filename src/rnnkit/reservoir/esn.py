"""Echo state networks: fixed random reservoirs and a linear readout solved in closed form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from rnnkit.atomic import atomic_write_bytes
from rnnkit.reservoir.checks import (
    check_count,
    check_fraction,
    check_nonnegative,
    check_positive_number,
)
from rnnkit.reservoir.metrics import nrmse
from rnnkit.reservoir.reservoir import ACTIVATIONS, BACKENDS, Reservoir
from rnnkit.reservoir.ridge import Ridge
from rnnkit.reservoir.sequences import Sequences, as_sequences, check_paired

FORMAT = "rnnkit.esn"
FORMAT_VERSION = 1
# Readout features held at once (8 MiB in float64) whatever T and B: chunks this small
# stay in cache and reuse freed memory instead of page-faulting in fresh pages.
CHUNK_ELEMENTS = 1 << 20
DTYPES = {"float64": torch.float64, "float32": torch.float32}


class EchoStateNetwork:
    r"""An echo state network (Jaeger 2001) with ReservoirPy's hyperparameters.

    .. math::

        x^1_t &= (1 - lr)\, x^1_{t-1} + lr\, f(W^1_{in} u_t + W^1 x^1_{t-1}
                 + W_{fb} y_{t-1} + bias^1) \\
        x^l_t &= (1 - lr)\, x^l_{t-1} + lr\, f(W^l_{in} x^{l-1}_t + W^l x^l_{t-1} + bias^l)
                 \qquad l = 2 .. layers \\
        y_t &= W_{out} [x^1_t; \dots; x^{layers}_t; u_t] + b

    in code: ``reservoirs[l]`` (:class:`~rnnkit.reservoir.Reservoir`) computes ``x^l``,
    ``readout`` (:class:`~rnnkit.reservoir.Ridge`) holds ``W_out`` and ``b``. The
    ``W_fb y_{t-1}`` term is there only with ``feedback=True`` (first layer only), the
    ``u_t`` block only with ``input_to_readout=True``.

    Only the readout is trained: :meth:`fit` runs the reservoirs over the inputs,
    drops ``washout`` steps of each sequence, and solves ridge regression from
    statistics accumulated chunk by chunk (memory does not grow with the data).

    Data at this boundary is batch-first, as in ReservoirPy: one sequence ``(T, F)``, a
    batch ``(B, T, F)``, or a list of ``(T_i, F)`` arrays of any lengths; NumPy in
    gives NumPy out, tensors in give (CPU) tensors out. Sequences of equal length run
    together as one batch.

    Args:
        units: reservoir size per layer.
        sr, lr, input_scaling, connectivity, input_connectivity, bias_scaling,
            activation, noise, feedback_scaling, backend: as :class:`Reservoir`
            (every layer gets the same; deeper layers read the previous layer's
            states through their own ``W_in``).
        ridge: λ of the readout (≥ 0; the bias is not regularised).
        seed: seeds every layer's weights (each layer gets its own seed drawn from it);
            None draws one from torch's global generator.
        layers: stacked reservoirs (deep ESN); the readout sees all their states.
        feedback: feed the previous output into the first reservoir (teacher forcing
            during :meth:`fit`, the network's own outputs in :meth:`predict` and
            :meth:`generate`).
        input_to_readout: the readout also sees ``u_t``.
        dtype: ``torch.float64`` or ``torch.float32`` for the reservoirs (the readout
            is always solved in float64).
    """

    def __init__(
        self,
        units: int = 500,
        sr: float = 1.25,
        lr: float = 0.3,
        input_scaling: float = 1.0,
        connectivity: float = 0.1,
        input_connectivity: float = 0.1,
        bias_scaling: float = 1.0,
        ridge: float = 1e-6,
        seed: int | None = None,
        layers: int = 1,
        feedback: bool = False,
        input_to_readout: bool = True,
        noise: float = 0.0,
        dtype: torch.dtype = torch.float64,
        activation: str = "tanh",
        feedback_scaling: float = 1.0,
        backend: str = "auto",
    ) -> None:
        check_count("units", units, minimum=1)
        check_count("layers", layers, minimum=1)
        check_positive_number("sr", sr)
        check_fraction("lr", lr)
        check_fraction("connectivity", connectivity)
        check_fraction("input_connectivity", input_connectivity)
        for name, value in (
            ("input_scaling", input_scaling),
            ("bias_scaling", bias_scaling),
            ("feedback_scaling", feedback_scaling),
            ("noise", noise),
        ):
            check_nonnegative(name, value)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}"
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not supported; use one of {BACKENDS}")
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        self.config = {
            "units": units,
            "sr": float(sr),
            "lr": float(lr),
            "input_scaling": float(input_scaling),
            "connectivity": float(connectivity),
            "input_connectivity": float(input_connectivity),
            "bias_scaling": float(bias_scaling),
            "ridge": float(ridge),
            "seed": int(seed),
            "layers": layers,
            "feedback": bool(feedback),
            "input_to_readout": bool(input_to_readout),
            "noise": float(noise),
            "dtype": str(dtype).removeprefix("torch."),
            "activation": activation,
            "feedback_scaling": float(feedback_scaling),
            "backend": backend,
        }
        self.units, self.layers, self.dtype = units, layers, dtype
        self.feedback, self.input_to_readout = bool(feedback), bool(input_to_readout)
        self.readout = Ridge(ridge)
        self.reservoirs: list[Reservoir] = []
        self.input_size: int | None = None
        self.output_size: int | None = None
        # the state to continue from (reset=False, generate without warmup): per layer
        # (S, N) for the S sequences of the last call, and their last outputs (S, O)
        self._carry: tuple[list[Tensor], Tensor] | None = None

    # ------------------------------------------------------------------ building
    def _build(self, input_size: int, output_size: int, weights=None) -> None:
        c = self.config
        g = torch.Generator().manual_seed(c["seed"])
        seeds = [int(torch.randint(0, 2**62, (1,), generator=g)) for _ in range(self.layers)]
        self.reservoirs = [
            Reservoir(
                input_size if k == 0 else self.units,
                self.units,
                sr=c["sr"],
                lr=c["lr"],
                input_scaling=c["input_scaling"],
                bias_scaling=c["bias_scaling"],
                connectivity=c["connectivity"],
                input_connectivity=c["input_connectivity"],
                activation=c["activation"],
                noise=c["noise"],
                feedback_size=output_size if self.feedback and k == 0 else 0,
                feedback_scaling=c["feedback_scaling"],
                seed=seeds[k],
                dtype=self.dtype,
                backend=c["backend"],
                weights=None if weights is None else weights[k],
            )
            for k in range(self.layers)
        ]
        self.input_size, self.output_size = input_size, output_size

    def _ensure_built(self, input_size: int, output_size: int) -> None:
        if not self.reservoirs:
            self._build(input_size, output_size)
        elif (input_size, output_size) != (self.input_size, self.output_size):
            raise ValueError(
                f"this network was built for {self.input_size} input and {self.output_size} "
                f"output features, got {input_size} and {output_size}; create a new "
                f"EchoStateNetwork for other sizes"
            )

    def _check_fitted(self) -> None:
        if self.readout.W_out is None:
            raise ValueError("the network is not fitted; call fit(inputs, targets) first")

    @property
    def features(self) -> int:
        """Readout input size: ``layers * units`` (+ ``input_size`` with input_to_readout)."""
        return self.layers * self.units + (self.input_size if self.input_to_readout else 0)

    # ------------------------------------------------------------------ running
    def _features(
        self, u: Tensor, states: list[Tensor | None], y_prev: Tensor | None
    ) -> tuple[Tensor, list[Tensor]]:
        """Readout inputs ``(T, B, F)`` for ``u (T, B, I)``, and each layer's last state."""
        h, blocks, finals = u, [], []
        for k, reservoir in enumerate(self.reservoirs):
            h, final = reservoir.run(h, states[k], y_prev if k == 0 and self.feedback else None)
            blocks.append(h)  # (T, B, N)
            finals.append(final)  # (B, N)
        if self.input_to_readout:
            blocks.append(u)
        return torch.cat(blocks, dim=-1), finals

    def _readout(self, feats: Tensor) -> Tensor:
        """``W_out feats + b``: ``(..., O)`` in the network's dtype."""
        y = self.readout.predict(feats.reshape(-1, feats.shape[-1]))
        return y.to(self.dtype).view(*feats.shape[:-1], -1)

    def _chunk(self, batch: int) -> int:
        return max(1, CHUNK_ELEMENTS // (batch * self.features))

    def fit(self, inputs, targets, washout: int = 0) -> EchoStateNetwork:
        """Train the readout on ``inputs`` → ``targets``, ignoring each sequence's first
        ``washout`` steps (the transient from the zero initial state).

        Sizes are taken from the first fit; a later fit re-solves the readout on the
        new data with the same reservoirs. With ``feedback=True`` the first reservoir
        sees the true previous target (teacher forcing). Returns ``self``.
        """
        u_seqs = as_sequences(inputs, "inputs", self.dtype)
        y_seqs = as_sequences(targets, "targets", self.dtype)
        check_paired(u_seqs, y_seqs)
        washout = check_count("washout", washout, minimum=0)
        shortest = min(u_seqs.lengths)
        if washout >= shortest:
            raise ValueError(
                f"washout={washout} leaves nothing of a sequence of {shortest} steps; "
                f"use a washout below {shortest}"
            )
        self._ensure_built(u_seqs.features, y_seqs.features)
        self.readout.reset()
        carry_states, _ = self._start(u_seqs.count, reset=True)
        last_feats = torch.zeros(u_seqs.count, self.features, dtype=self.dtype)
        for (indices, u), (_, y) in zip(u_seqs.groups, y_seqs.groups, strict=True):
            T, B, _ = u.shape
            y_prev = torch.cat([y.new_zeros((1, B, y.shape[2])), y[:-1]]) if self.feedback else None
            states: list[Tensor | None] = [None] * self.layers
            step = self._chunk(B)
            for t0 in range(0, T, step):
                t1 = min(T, t0 + step)
                fb = None if y_prev is None else y_prev[t0:t1]
                feats, states = self._features(u[t0:t1], states, fb)  # (t1 - t0, B, F)
                skip = max(washout - t0, 0)
                if skip < t1 - t0:
                    self.readout.partial_fit(
                        feats[skip:].reshape(-1, self.features),
                        y[t0 + skip : t1].reshape(-1, self.output_size),
                    )
            for k in range(self.layers):
                carry_states[k][indices] = states[k]
            last_feats[indices] = feats[-1]
        self.readout.solve()
        self._carry = (carry_states, self._readout(last_feats))
        return self

    def predict(self, inputs, reset: bool = True):
        """Outputs ``y_t`` for ``inputs``, in their layout and type.

        ``reset=True`` starts every sequence from the zero state (and a zero previous
        output with feedback). ``reset=False`` continues from where the last
        ``fit``/``predict``/``generate`` left each sequence, which needs the same
        number of sequences as that call (so a long series can be predicted in pieces).
        With ``feedback=True`` each output is fed back, so the run is step by step.
        """
        self._check_fitted()
        seqs = as_sequences(inputs, "inputs", self.dtype)
        if seqs.features != self.input_size:
            raise ValueError(
                f"inputs have {seqs.features} features but the network was fitted with "
                f"{self.input_size}"
            )
        carry_states, carry_out = self._start(seqs.count, reset)
        outputs = []
        for indices, u in seqs.groups:
            states = [s[indices] for s in carry_states]
            y_last = carry_out[indices]  # (B, O)
            out = u.new_empty((u.shape[0], u.shape[1], self.output_size))  # (T, B, O)
            step = 1 if self.feedback else self._chunk(u.shape[1])
            for t0 in range(0, u.shape[0], step):
                t1 = min(u.shape[0], t0 + step)
                feats, states = self._features(u[t0:t1], states, y_last.unsqueeze(0))
                out[t0:t1] = self._readout(feats)
                y_last = out[t1 - 1]
            for k in range(self.layers):
                carry_states[k][indices] = states[k]
            carry_out[indices] = y_last
            outputs.append(out)
        self._carry = (carry_states, carry_out)
        return seqs.restore(outputs)

    def generate(self, n_steps: int, warmup=None):
        """The ``n_steps`` values that follow, in closed loop: each output is the next input.

        With ``warmup`` (a sequence, batch or list, as for :meth:`predict`), the network
        runs over it from the zero state and returns the values that follow it: first
        its one-step prediction after the warmup's last step, then ``n_steps - 1``
        fed-back steps. Without it, generation continues after the last output of the
        previous ``fit``/``predict``/``generate``. Returns ``(n_steps, O)`` per sequence
        in the warmup's layout and type (NumPy without warmup). Needs
        ``output_size == input_size``.
        """
        self._check_fitted()
        if self.output_size != self.input_size:
            raise ValueError(
                f"generate feeds each output back as the next input, so it needs as many "
                f"outputs as inputs; this network maps {self.input_size} to {self.output_size}"
            )
        n_steps = check_count("n_steps", n_steps, minimum=0)
        if warmup is not None:
            layout = as_sequences(warmup, "warmup", self.dtype)
            self.predict(warmup)
        states, y = self._carry  # fit and predict always leave one
        count = y.shape[0]
        if warmup is None:
            shape = "single" if count == 1 else "batch"
            layout = Sequences([], [n_steps] * count, self.input_size, shape, numpy=True)
        out = y.new_empty((n_steps, count, self.output_size))  # (n_steps, S, O)
        start = 1 if warmup is not None and n_steps else 0
        if start:
            out[0] = y  # the warmup's last prediction is the first value after it
        for t in range(start, n_steps):
            feats, states = self._features(y.unsqueeze(0), states, y.unsqueeze(0))
            y = out[t] = self._readout(feats)[0]
        self._carry = (states, y)
        return layout.restore_all(out)

    def score(self, inputs, targets, washout: int = 0) -> float:
        """NRMSE of :meth:`predict` (from the zero state) against ``targets``, leaving out
        each sequence's first ``washout`` steps."""
        check_count("washout", washout, minimum=0)
        true = as_sequences(targets, "targets", torch.float64)
        pred = as_sequences(self.predict(inputs), "predictions", torch.float64)
        check_paired(pred, true)
        return nrmse([y[washout:] for _, y in true.groups], [p[washout:] for _, p in pred.groups])

    def _start(self, count: int, reset: bool) -> tuple[list[Tensor], Tensor]:
        """Per-layer states ``(S, N)`` and last outputs ``(S, O)`` to start from (copies)."""
        if reset or self._carry is None:
            states = [torch.zeros(count, self.units, dtype=self.dtype) for _ in range(self.layers)]
            return states, torch.zeros(count, self.output_size, dtype=self.dtype)
        states, out = self._carry
        if out.shape[0] != count:
            raise ValueError(
                f"reset=False continues the {out.shape[0]} sequence(s) of the last call; pass "
                f"as many, or use reset=True"
            )
        return [s.clone() for s in states], out.clone()

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write one safetensors file: every layer's weights, the readout, and the
        config as JSON in its header. Atomic: the file is whole or not there."""
        self._check_fitted()
        tensors = {
            f"layer{k}.{name}": buffer.detach().cpu().contiguous()
            for k, reservoir in enumerate(self.reservoirs)
            for name, buffer in reservoir.named_buffers()
        }
        tensors["readout.W_out"] = self.readout.W_out.contiguous()
        tensors["readout.bias"] = self.readout.bias.contiguous()
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(self.config),
            "input_size": str(self.input_size),
            "output_size": str(self.output_size),
        }
        # Serialised in memory, then written by Python: a full disk is an OSError naming
        # the file (safetensors' own writer raises its own error type without it).
        atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EchoStateNetwork:
        """Read a network written by :meth:`save`; it predicts exactly as the saved one.

        The noise generator restarts from the seed, so with ``noise > 0`` the noise
        drawn after loading is not the saved network's continuation.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path} is not a file; pass the path EchoStateNetwork.save wrote")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(
                f"{path} is damaged or not a safetensors file ({_first_line(error)}); "
                f"save the network again"
            ) from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not an rnnkit echo state network file (no {FORMAT} tag)")
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise ValueError(
                f"{path} has format version {meta.get('format_version')!r:.40}; this rnnkit reads "
                f"version {FORMAT_VERSION}"
            )
        try:
            config = json.loads(meta["config"])
            config["dtype"] = DTYPES[config["dtype"]]
            esn = cls(**config)
            weights = [
                {
                    name: tensors[f"layer{k}.{name}"].to(esn.dtype)
                    for name in ("W", "W_in", "bias", "W_fb")
                }
                for k in range(esn.layers)
            ]
            esn._build(int(meta["input_size"]), int(meta["output_size"]), weights)
            w_out = tensors["readout.W_out"].double()
            bias = tensors["readout.bias"].double()
            if w_out.shape != (esn.output_size, esn.features) or bias.shape != (esn.output_size,):
                raise ValueError(f"readout shapes {tuple(w_out.shape)}, {tuple(bias.shape)}")
        # OverflowError and RuntimeError: numbers torch cannot take (a seed of 1e300),
        # JSON nested too deeply (RecursionError is a RuntimeError).
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as error:
            raise ValueError(
                f"{path} is damaged ({_first_line(error)}); save the network again"
            ) from None
        esn.readout.W_out, esn.readout.bias = w_out, bias
        return esn


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
