"""Training lowers the loss; checkpoints round-trip exactly; resume continues the same run."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from geomjax.models import checkpoint as ckmod

from geomjax import models as M


def _classify_data(rng, n=192, d=253, k=4):
    centres = rng.normal(size=(k, d)) * 1.0
    y = rng.integers(0, k, n).astype(np.int32)
    x = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    return M.TaskData(x, y)


def _seq_data(rng, n=48, T=40, F=20, k=3):
    y = rng.integers(0, k, n).astype(np.int32)
    L = rng.integers(20, T + 1, n).astype(np.int32)
    x = rng.normal(size=(n, T, F)).astype(np.float32) + 1.5 * y[:, None, None] * (np.arange(F) < 5)
    return x, y, L


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(la, lb, strict=False)
    )


def test_phone_mlp_learns_and_checkpoints(tmp_path, rng):
    d = _classify_data(rng)
    res = M.train(
        0,
        "phone_mlp",
        d,
        d,
        epochs=3,
        ckpt_dir=tmp_path / "r",
        preset="tiny",
        batch_size=32,
        learning_rate=1e-2,
        progress=False,
    )
    m = res.metrics
    assert m["epoch"].tolist() == [0, 1, 2, 3]
    assert m["val_loss"].iloc[-1] < 0.7 * m["val_loss"].iloc[0]
    assert m["val_accuracy"].iloc[-1] > 0.8
    assert [e for e, _ in M.list_checkpoints(tmp_path / "r")] == [0, 1, 2, 3]
    ck = M.load_checkpoint(tmp_path / "r")  # latest
    assert ck.epoch == 3 and ck.step == 3 * (192 // 32)
    assert _leaves_equal(ck.variables, res.variables)
    ev = M.evaluate(ck.model, ck.variables, d)
    assert ev["accuracy"] == pytest.approx(m["val_accuracy"].iloc[-1])
    ck0 = M.load_checkpoint(tmp_path / "r", 0)  # epoch 0 = the initial weights
    init = M.init_variables(jax.random.split(jax.random.key(0))[0], ck0.model, d.inputs[:1])
    assert _leaves_equal(ck0.variables, init)
    assert M.read_metrics(tmp_path / "r").shape[0] == 4
    with pytest.raises(ValueError, match="epoch"):
        M.load_checkpoint(tmp_path / "r", 7)


def test_resume_continues_the_same_run(tmp_path, rng):
    """2 epochs straight == 1 epoch, 'interrupted', then resumed to 2 (BN and dropout included)."""
    d = _classify_data(rng, n=96)
    kw = dict(
        preset="tiny", batch_size=32, progress=False, config={"batch_norm": True, "dropout": 0.2}
    )
    full = M.train(3, "phone_mlp", d, d, epochs=2, ckpt_dir=tmp_path / "a", **kw)
    M.train(3, "phone_mlp", d, d, epochs=1, ckpt_dir=tmp_path / "b", **kw)
    resumed = M.train(3, "phone_mlp", d, d, epochs=2, ckpt_dir=tmp_path / "b", **kw)
    assert _leaves_equal(full.variables, resumed.variables)
    a, b = M.read_metrics(tmp_path / "a"), M.read_metrics(tmp_path / "b")
    np.testing.assert_array_equal(a["val_loss"].to_numpy(), b["val_loss"].to_numpy())
    raw_a = ckmod._restore_raw(tmp_path / "a" / "epoch_0002.msgpack")
    raw_b = ckmod._restore_raw(tmp_path / "b" / "epoch_0002.msgpack")
    assert _leaves_equal(raw_a["opt_state"], raw_b["opt_state"])
    # a different configuration in the same directory is refused
    with pytest.raises(ValueError, match="different run"):
        M.train(4, "phone_mlp", d, d, epochs=3, ckpt_dir=tmp_path / "b", **kw)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    M.save_checkpoint(tmp_path, 0, {"a": np.arange(3)})
    before = (tmp_path / "epoch_0000.msgpack").read_bytes()

    def boom(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        M.save_checkpoint(tmp_path, 0, {"a": np.arange(5)})
    monkeypatch.undo()
    assert (tmp_path / "epoch_0000.msgpack").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0000.msgpack"]


def test_checkpoint_is_plain_msgpack(tmp_path):
    """Checkpoints hold only msgpack data (no pickle opcodes), and a mismatched file is refused."""
    import msgpack

    M.save_checkpoint(
        tmp_path, 2, {"variables": {"params": {"w": np.ones((2, 3), np.float32)}}, "step": 5}
    )
    raw = (tmp_path / "epoch_0002.msgpack").read_bytes()
    obj = msgpack.unpackb(raw, raw=False, strict_map_key=False)  # plain msgpack decoding
    assert obj["step"] == 5
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "model": "phone_mlp",
                "config": M.config_to_dict(M.get_config("phone_mlp", "tiny")),
                "input_shape": [None, 253],
                "sequence": False,
            }
        )
    )
    with pytest.raises((ValueError, KeyError)):
        M.load_checkpoint(tmp_path, 2)


@pytest.mark.parametrize("name", ["word_cnn", "speaker_cnn", "ds2", "transformer"])
def test_few_steps_lower_the_loss(name, tmp_path, rng):
    if name == "word_cnn":
        y = rng.integers(0, 3, 48).astype(np.int32)
        x = (
            rng.normal(size=(48, 16, 24)).astype(np.float32)
            + 1.5 * y[:, None, None] * (np.arange(16) < 6)[:, None]
        )
        data = M.TaskData(x, y)
    elif name == "speaker_cnn":
        x, y, L = _seq_data(rng)
        data = M.TaskData(x, y, L)
    elif name == "ds2":
        texts = ["AB", "BA", "ABA", "B"] * 6
        lab, ll = M.encode_text(texts)
        x = rng.normal(size=(24, 48, 21)).astype(np.float32)
        for i, t in enumerate(texts):  # a character-dependent pattern in time
            for j, c in enumerate(t):
                x[i, 8 + 12 * j : 14 + 12 * j, : 10 if c == "A" else 10 :] += 2.0
        data = M.TaskData(x, lab, np.full(24, 48, np.int32), ll)
    else:
        x, _, L = _seq_data(rng, n=32)
        x = np.cumsum(x, axis=1) / 4  # smooth in time: masked frames are predictable
        data = M.TaskData(x.astype(np.float32), lengths=L)
    res = M.train(
        0,
        name,
        data,
        data,
        epochs=2,
        ckpt_dir=tmp_path,
        preset="tiny",
        batch_size=8,
        learning_rate=3e-3,
        progress=False,
    )
    m = res.metrics
    assert m["val_loss"].iloc[-1] < m["val_loss"].iloc[0], m
    assert np.all(np.isfinite(m["train_loss"].iloc[1:]))
    if name == "ds2":
        assert {"val_cer", "val_wer"} <= set(m.columns)


def test_train_rejects_bad_input(tmp_path, rng):
    d = _classify_data(rng, n=40)
    with pytest.raises(ValueError, match="model_name"):
        M.train(0, "mlp", d, epochs=1, ckpt_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        M.train(0, "phone_mlp", d, epochs=1, ckpt_dir=tmp_path, batch_size=64)
    with pytest.raises(ValueError, match="labels"):
        M.train(0, "phone_mlp", d, M.TaskData(d.inputs, d.labels + 10), epochs=1, ckpt_dir=tmp_path)
    with pytest.raises(ValueError, match="CTC"):
        M.train(
            0,
            "ds2",
            M.TaskData(rng.normal(size=(8, 10, 5)), np.zeros(8, np.int32)),
            epochs=1,
            ckpt_dir=tmp_path,
            batch_size=4,
        )
    with pytest.raises(ValueError, match="rows"):
        M.TaskData(np.zeros((4, 3)), np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="NaN"):
        M.TaskData(np.full((4, 3), np.nan), np.zeros(4, np.int32))
