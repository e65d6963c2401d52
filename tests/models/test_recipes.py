"""Training recipes: learning-rate schedules, SpecAugment-style masking, length-ordered batches,
early stopping and word-CNN dropout."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from geomjax.models.augment import check_augment, spec_augment
from geomjax.models.train import _length_order, _stalled, make_schedule

from geomjax import models as M


def test_cosine_schedule_warms_up_and_decays_to_zero():
    s = make_schedule(1e-2, 10, schedule="cosine", total_epochs=5, warmup_steps=10)
    assert float(s(0)) == 0.0
    assert float(s(10)) == pytest.approx(1e-2)
    assert float(s(50)) == pytest.approx(0.0, abs=1e-12)
    vals = np.array([float(s(i)) for i in range(10, 51)])
    assert np.all(np.diff(vals) <= 1e-12)  # monotone decay after the warm-up
    # the cosine midpoint is half the peak
    assert float(s(30)) == pytest.approx(0.5e-2, rel=1e-6)


def test_exponential_schedule_is_the_per_epoch_decay():
    s = make_schedule(1.0, 4, lr_decay=0.5)
    np.testing.assert_allclose([float(s(i)) for i in (0, 3, 4, 8)], [1.0, 1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="schedule"):
        make_schedule(1.0, 4, schedule="step")
    with pytest.raises(ValueError, match="total_epochs"):
        make_schedule(1.0, 4, schedule="cosine")


def test_spec_augment_masks_within_limits(rng):
    x = np.ones((64, 20, 50), np.float32)  # (B, F, T) images
    a = check_augment({"freq_masks": 1, "freq_width": 4, "time_masks": 2, "time_width": 5})
    y = np.asarray(spec_augment(jax.random.key(0), x, a, time_axis=2, freq_axis=1))
    assert y.shape == x.shape and set(np.unique(y)) <= {0.0, 1.0}
    zero_f = (y == 0).all(axis=2).sum(axis=1)  # fully masked bands per example
    zero_t = (y == 0).all(axis=1).sum(axis=1)  # fully masked frames per example
    assert zero_f.max() <= 4 and zero_t.max() <= 10
    assert zero_f.sum() > 0 and zero_t.sum() > 0
    # the masked cells are exactly the union of whole bands and whole frames
    band = (y == 0).all(axis=2)[:, :, None] | (y == 0).all(axis=1)[:, None, :]
    np.testing.assert_array_equal(y == 0, band)


def test_spec_augment_shift_is_a_circular_roll(rng):
    x = rng.normal(size=(8, 6, 30)).astype(np.float32)
    a = check_augment({"time_shift": 3})
    y = np.asarray(spec_augment(jax.random.key(1), x, a, time_axis=2, freq_axis=1))
    for b in range(8):
        assert any(np.array_equal(y[b], np.roll(x[b], s, axis=1)) for s in range(-3, 4))


def test_spec_augment_sequences_stay_within_lengths(rng):
    x = np.ones((16, 40, 8), np.float32)  # (B, T, F) sequences
    L = rng.integers(10, 41, 16)
    a = check_augment({"time_masks": 3, "time_width": 10, "time_shift": 5})
    y = np.asarray(spec_augment(jax.random.key(2), x, a, 1, 2, lengths=L))
    for b in range(16):
        assert (y[b, L[b] :] == 1).all()  # padding untouched, no shift on sequences


def test_check_augment_rejects_bad_specs():
    with pytest.raises(ValueError, match="unknown"):
        check_augment({"freq_mask": 1})
    with pytest.raises(ValueError, match="integer"):
        check_augment({"time_width": -1})
    assert check_augment(None) is None


def test_length_order_sortagrad_and_grouped(rng):
    L = rng.integers(5, 100, 200)
    perm = rng.permutation(200)
    asc = _length_order(perm, L, 8, True, jax.random.key(0))
    assert sorted(asc.tolist()) == list(range(200))
    assert np.all(np.diff(L[asc]) >= 0)
    grp = _length_order(perm, L, 8, False, jax.random.key(0), group=4)
    assert sorted(grp.tolist()) == list(range(200))
    # batches are sorted within groups of 4 batches: less spread than random batches
    spread = lambda o: np.mean([np.ptp(L[o[i : i + 8]]) for i in range(0, 200, 8)])  # noqa: E731
    assert spread(grp) < 0.5 * spread(perm)


def test_stalled():
    import pandas as pd

    m = pd.DataFrame({"val_accuracy": [0.1, 0.5, 0.6, 0.55, 0.58]})
    assert _stalled(m, "classify", 2) and not _stalled(m, "classify", 3)
    c = pd.DataFrame({"val_cer": [1.0, 0.8, 0.7, 0.69]})
    assert not _stalled(c, "ctc", 1)


def test_train_with_recipe_options_and_resume(tmp_path, rng):
    """Cosine + warm-up, augmentation, SortaGrad and patience train, and resume exactly."""
    n, T, F = 48, 30, 20
    y = rng.integers(0, 3, n).astype(np.int32)
    L = rng.integers(12, T + 1, n).astype(np.int32)
    x = rng.normal(size=(n, T, F)).astype(np.float32) + 1.5 * y[:, None, None] * (np.arange(F) < 5)
    d = M.TaskData(x, y, L)
    kw = dict(
        preset="tiny",
        batch_size=8,
        progress=False,
        learning_rate=1e-2,
        schedule="cosine",
        warmup_steps=3,
        augment={"time_masks": 1, "time_width": 4, "freq_masks": 1, "freq_width": 2},
        sortagrad=True,
        length_grouped=True,
        patience=5,
        length_bucket=8,
    )
    full = M.train(1, "speaker_cnn", d, d, epochs=3, ckpt_dir=tmp_path / "a", **kw)
    assert 0 < full.metrics["lr"].iloc[-1] < 0.05 * 1e-2  # the last step, near the end of the decay
    M.train(1, "speaker_cnn", d, d, epochs=3, ckpt_dir=tmp_path / "b", time_budget_s=0.0, **kw)
    res = M.train(1, "speaker_cnn", d, d, epochs=3, ckpt_dir=tmp_path / "b", **kw)
    for u, v in zip(jax.tree.leaves(full.variables), jax.tree.leaves(res.variables), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(ValueError, match="different run"):  # cosine: more epochs = new schedule
        M.train(1, "speaker_cnn", d, d, epochs=4, ckpt_dir=tmp_path / "b", **kw)
    with pytest.raises(ValueError, match="sequence models"):
        M.train(
            0,
            "phone_mlp",
            M.TaskData(x[:, 0], y),
            epochs=1,
            ckpt_dir=tmp_path / "c",
            sortagrad=True,
            progress=False,
            batch_size=8,
        )


def test_word_cnn_dropout_only_in_training(rng):
    m = M.build_model("word_cnn", "tiny", n_classes=5, dropout=0.5)
    x = rng.normal(size=(4, 20, 30)).astype(np.float32)
    v = M.init_variables(0, m, x[:1])
    a, _ = m.apply(v, x, train=False)
    b, _ = m.apply(v, x, train=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    (c, _), _ = m.apply(
        v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)}
    )
    assert c.shape == a.shape
    with pytest.raises(ValueError, match="dropout"):
        M.get_config("word_cnn", "tiny", dropout=1.0)
