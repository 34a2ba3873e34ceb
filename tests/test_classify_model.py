"""SequenceClassifier (padding, pooling, tagging), classification metrics, and digits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sklearn.metrics
import torch

from rnnkit.data.digits import digits_splits
from rnnkit.metrics.classification import (
    accuracy,
    confusion_matrix,
    f1_per_class,
    format_confusion,
    macro_f1,
    plot_confusion,
)
from rnnkit.models.classifier import (
    ClassifierConfig,
    SequenceClassifier,
    classification_loss,
    classification_metrics,
    predict_batches,
)
from rnnkit.train.config import FitConfig
from rnnkit.train.fit import Batches, FitTrainer

LENGTHS = torch.tensor([5, 2, 7, 1])


def model(pooling="last", bidirectional=False, cell="lstm", tokens=False, **kw):
    torch.manual_seed(0)
    sizes = {"vocab_size": 11, "embedding_size": 3} if tokens else {"input_size": 2}
    kw.setdefault("num_layers", 2)
    config = ClassifierConfig(
        num_classes=3,
        cell=cell,
        hidden_size=5,
        bidirectional=bidirectional,
        pooling=pooling,
        **sizes,
        **kw,
    )
    return SequenceClassifier(config).double().eval()


def padded_pair(tokens=False):
    """The same batch padded with zeros and with garbage past each length."""
    g = torch.Generator().manual_seed(1)
    valid = torch.arange(7)[None, :] < LENGTHS[:, None]  # (B, T)
    if tokens:
        x = torch.randint(1, 11, (4, 7), generator=g)
        garbage = torch.randint(0, 11, (4, 7), generator=g)
        return x * valid, torch.where(valid, x, garbage)
    x = torch.randn(4, 7, 2, generator=g, dtype=torch.float64)
    garbage = 1e3 * torch.randn(4, 7, 2, generator=g, dtype=torch.float64)
    return x * valid[..., None], torch.where(valid[..., None], x, garbage)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_padding_changes_nothing(pooling, bidirectional, cell):
    m = model(pooling, bidirectional, cell)
    clean, dirty = padded_pair()
    logits = m(clean, LENGTHS)
    torch.testing.assert_close(m(dirty, LENGTHS), logits, atol=1e-6, rtol=0)
    alone = torch.cat([m(clean[i : i + 1, : LENGTHS[i]]) for i in range(4)])  # no padding at all
    torch.testing.assert_close(alone, logits, atol=1e-6, rtol=0)
    assert logits.shape == (4, 3) and logits.std() > 1e-3  # not a constant output


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_padding_changes_nothing_for_tokens(pooling):
    m = model(pooling, bidirectional=True, tokens=True)
    clean, dirty = padded_pair(tokens=True)
    torch.testing.assert_close(m(dirty, LENGTHS), m(clean, LENGTHS), atol=1e-6, rtol=0)
    alone = torch.cat([m(clean[i : i + 1, : LENGTHS[i]]) for i in range(4)])
    torch.testing.assert_close(alone, m(clean, LENGTHS), atol=1e-6, rtol=0)


def test_last_pooling_is_each_directions_final_state():
    m = model("last", bidirectional=True)
    _, dirty = padded_pair()
    y, lengths = m.outputs(dirty, LENGTHS)
    pooled = m.pool(y, lengths)
    for i in range(4):
        seq = dirty[i : i + 1, : LENGTHS[i]].transpose(0, 1)  # (L, 1, 2)
        _, final = m.rnn(seq)
        (h_fwd, _), (h_bwd, _) = final[-1]  # top layer: (fwd (h, c), bwd (h, c))
        torch.testing.assert_close(pooled[i], torch.cat([h_fwd[0], h_bwd[0]]), atol=1e-12, rtol=0)


def test_mean_and_attention_pooling_by_hand():
    for pooling in ("mean", "attention"):
        m = model(pooling)
        _, dirty = padded_pair()
        y, lengths = m.outputs(dirty, LENGTHS)  # (T, B, H)
        pooled = m.pool(y, lengths)
        for i in range(4):
            steps = y[: LENGTHS[i], i]  # (L, H)
            if pooling == "mean":
                expected = steps.mean(0)
            else:
                scores = steps @ m.attention.weight[0] + m.attention.bias[0]
                expected = (torch.softmax(scores, 0)[:, None] * steps).sum(0)
            torch.testing.assert_close(pooled[i], expected, atol=1e-12, rtol=0)


def test_attention_weights_are_zero_on_padding():
    m = model("attention", bidirectional=True)
    _, dirty = padded_pair()
    weights = m.attention_weights(dirty, LENGTHS)  # (B, T)
    valid = torch.arange(7)[None, :] < LENGTHS[:, None]
    assert (weights[~valid] == 0).all()
    assert (weights[valid] > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(4, dtype=torch.float64))
    assert weights[3, 0] == 1.0  # a one-step sequence puts all its weight on that step
    with pytest.raises(ValueError, match="pools with 'last'"):
        model("last").attention_weights(dirty, LENGTHS)


def test_tags_per_step_ignore_padding_and_learn_a_running_sign():
    m = model("last", bidirectional=True)
    clean, dirty = padded_pair()
    tags = m.tags(dirty, LENGTHS)  # (B, T, C)
    valid = torch.arange(7)[None, :] < LENGTHS[:, None]
    assert tags.shape == (4, 7, 3) and (tags[~valid] == 0).all()
    for i in range(4):
        torch.testing.assert_close(
            tags[i, : LENGTHS[i]], m.tags(clean[i : i + 1, : LENGTHS[i]])[0], atol=1e-10, rtol=0
        )
    # Tag each step with whether the sum so far is positive: needs memory, one-way stack.
    torch.manual_seed(0)
    tagger = SequenceClassifier(ClassifierConfig(num_classes=2, input_size=1, hidden_size=16))
    opt = torch.optim.Adam(tagger.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.randn(32, 12, 1, generator=g)
        target = (x.cumsum(1)[..., 0] > 0).long()  # (B, T)
        loss = torch.nn.functional.cross_entropy(tagger.tags(x).reshape(-1, 2), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(256, 12, 1, generator=g)
    lengths = torch.randint(1, 13, (256,), generator=g)
    with torch.no_grad():
        predicted = tagger.tags(x, lengths).argmax(-1)
    valid = torch.arange(12)[None, :] < lengths[:, None]
    target = x.cumsum(1)[..., 0] > 0
    assert (predicted[valid] == target[valid]).float().mean() > 0.9


def test_config_validation_and_round_trip():
    config = ClassifierConfig(num_classes=4, vocab_size=30, pooling="mean", bidirectional=True)
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    for bad, message in [
        ({"num_classes": 3}, "exactly one of input_size"),
        ({"num_classes": 3, "input_size": 2, "vocab_size": 5}, "exactly one of input_size"),
        ({"num_classes": 1, "input_size": 2}, "at least 2 classes"),
        ({"num_classes": 3, "input_size": 2, "pooling": "max"}, "pooling='max'"),
        ({"num_classes": 3, "input_size": 0}, "input_size must be a positive"),
        ({"num_classes": 3, "input_size": 2, "cell": "gru", "layer_norm": True}, "layer_norm"),
    ]:
        with pytest.raises(ValueError, match=message):
            ClassifierConfig(**bad)
    with pytest.raises(ValueError, match="unknown classifier setting"):
        ClassifierConfig.from_dict({"num_classes": 3, "input_size": 2, "heads": 4})


def test_dropout_leaves_numeric_inputs_whole_but_drops_embeddings():
    clean, _ = padded_pair()
    numeric = model("last", bidirectional=True, dropout=0.9, num_layers=1)
    eval_outputs = numeric.outputs(clean, LENGTHS)[0]
    numeric.train()
    torch.testing.assert_close(numeric.outputs(clean, LENGTHS)[0], eval_outputs)
    tokens, _ = padded_pair(tokens=True)
    embedded = model("last", tokens=True, dropout=0.9, num_layers=1)
    eval_outputs = embedded.outputs(tokens, LENGTHS)[0]
    embedded.train()
    assert (embedded.outputs(tokens, LENGTHS)[0] - eval_outputs).abs().max() > 1e-3


def test_forward_refuses_bad_inputs():
    m = model()
    with pytest.raises(ValueError, match=r"expected floats of shape \(B, T, 2\)"):
        m(torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"every length must be in 1\.\.3"):
        m(torch.zeros(2, 3, 2, dtype=torch.float64), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"token ids must be in 0\.\.10"):
        model(tokens=True)(torch.tensor([[1, 11]]))


def test_predict_proba_batches_match_one_pass():
    m = model("mean")
    clean, _ = padded_pair()
    probs = m.predict_proba(clean, LENGTHS, batch_size=3)
    torch.testing.assert_close(probs, torch.softmax(m(clean, LENGTHS), -1))
    torch.testing.assert_close(probs.sum(1), torch.ones(4, dtype=torch.float64))


# ------------------------------------------------------------------- metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    y_pred[y_pred == 4] = 3  # class 4 is never predicted: its F1 is 0
    assert accuracy(y_true, y_pred) == pytest.approx(sklearn.metrics.accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(
        sklearn.metrics.f1_score(y_true, y_pred, average="macro"), abs=1e-12
    )
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, 6),
        sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(6)),
    )
    # Classes absent from both are left out, as scikit-learn does.
    assert macro_f1([0, 0, 2], [0, 2, 2], num_classes=5) == pytest.approx(
        sklearn.metrics.f1_score([0, 0, 2], [0, 2, 2], average="macro")
    )
    np.testing.assert_allclose(
        f1_per_class(confusion_matrix([0, 0, 2], [0, 2, 2])), [2 / 3, 0.0, 2 / 3]
    )
    assert accuracy(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0])) == pytest.approx(2 / 3)


def test_metrics_refuse_bad_labels():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="no labels"):
        macro_f1([], [])
    with pytest.raises(ValueError, match="outside num_classes=2"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="integer class ids"):
        accuracy([0.5], [1])


def test_confusion_text_and_png(tmp_path):
    matrix = confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert matrix.tolist() == [[1, 1], [1, 2]]
    assert format_confusion(matrix, ["cat", "dog"]) == (
        "true \\ pred cat dog\ncat           1   1\ndog           1   2"
    )
    path = tmp_path / "c.png"
    plot_confusion(matrix, ["cat", "dog"], path, title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    with pytest.raises(ValueError, match="does not fit 3 class names"):
        plot_confusion(matrix, ["a", "b", "c"], path)


# ------------------------------------------------------------------- digits


def test_digits_rows_reach_95_percent(tmp_path):
    """A small GRU on the digits, 8 rows of 8 pixels, with the minibatch trainer."""
    torch.set_num_threads(2)
    start = time.perf_counter()
    train, val, test = digits_splits("rows")
    torch.manual_seed(0)
    config = ClassifierConfig(num_classes=10, input_size=8, cell="gru", hidden_size=64)
    m = SequenceClassifier(config)

    def batches(data, size, shuffle):
        return Batches(
            data.tensors(), size, shuffle=shuffle, lengths_key="lengths", time_keys=("x",)
        )

    fit = FitConfig(batch_size=32, epochs=15, lr=0.01, clip_norm=1.0)
    result = FitTrainer(
        m,
        batches(train, 32, True),
        batches(val, 256, False),
        fit,
        tmp_path / "run",
        loss_fn=classification_loss,
        metrics_fn=classification_metrics,
        monitor="val_accuracy",
        mode="max",
        meta={"task": "classify"},
        progress=False,
    ).fit()
    assert result.stop_reason == "epochs" and result.best >= 0.95
    m.eval()
    probs, labels = predict_batches(m, batches(test, 256, False))
    test_accuracy = accuracy(labels, probs.argmax(-1))
    print(f"digits rows: test accuracy {test_accuracy:.4f} in {time.perf_counter() - start:.1f} s")
    assert test_accuracy >= 0.95
    assert labels.tolist() == test.labels.tolist()
