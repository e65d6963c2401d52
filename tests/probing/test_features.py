import jax.numpy as jnp
import numpy as np
import pytest

import geomjax.probing as gp


def test_pool_mean_and_stats_match_numpy(rng):
    frames = rng.standard_normal((5, 7, 3))
    lengths = np.array([7, 1, 3, 5, 2])
    mean = gp.pool_frames(frames, lengths=lengths)
    stats = gp.pool_frames(frames, lengths=lengths, method="stats")
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(mean[i], frames[i, :t].mean(0), rtol=1e-12)
        np.testing.assert_allclose(stats[i, :3], frames[i, :t].mean(0), rtol=1e-12)
        np.testing.assert_allclose(stats[i, 3:], frames[i, :t].std(0), rtol=1e-10, atol=1e-12)
    # a boolean mask with the same frames gives the same answer, padding values are ignored
    mask = np.arange(7)[None] < lengths[:, None]
    padded = np.where(mask[..., None], frames, 1e6)
    np.testing.assert_allclose(gp.pool_frames(padded, mask), mean, rtol=1e-12)


def test_pool_follows_dtype_and_checks(rng):
    f32 = rng.standard_normal((2, 4, 3)).astype(np.float32)
    assert gp.pool_frames(f32).dtype == jnp.float32
    with pytest.raises(ValueError, match="no valid frame"):
        gp.pool_frames(f32, lengths=[0, 4])
    with pytest.raises(ValueError, match="method"):
        gp.pool_frames(f32, method="max")
    with pytest.raises(ValueError, match="rank"):
        gp.pool_frames(f32[0])
    bad = f32.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.pool_frames(bad)


def test_standardizer_fits_train_only(rng):
    x = rng.standard_normal((50, 4)) * [1, 2, 3, 0] + [5, -1, 0, 7]
    st = gp.fit_standardizer(x[:40])
    z = st(x[:40])
    np.testing.assert_allclose(np.asarray(z[:, :3]).mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(z[:, :3]).std(0), 1, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(z[:, 3]), 0)  # constant feature -> 0, not NaN
    np.testing.assert_allclose(st(x[40:]), (x[40:] - x[:40].mean(0)) / np.where(
        x[:40].std(0) > 1e-8, x[:40].std(0), 1), rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        st(x[:, :3])


def test_concat_layers_index_maps_back_to_layer_and_unit(rng):
    layers = [rng.standard_normal((6, w)) for w in (3, 5, 2)]
    x, idx = gp.concat_layers(layers)
    assert x.shape == (6, 10) and idx.widths == (3, 5, 2)
    for d in range(10):
        l, u = int(idx.layer_of_neuron[d]), int(idx.unit_of_neuron[d])
        np.testing.assert_array_equal(x[:, d], layers[l][:, u])
        assert int(idx.neuron_id(l, u)) == d
    np.testing.assert_array_equal(np.asarray(idx.layer_masks()).sum(1), [3, 5, 2])
    stacked, mask = gp.stack_layers(layers)
    assert stacked.shape == (3, 6, 5)
    np.testing.assert_array_equal(np.asarray(mask).sum(1), [3, 5, 2])
    np.testing.assert_array_equal(stacked[1], layers[1])
    np.testing.assert_array_equal(stacked[2, :, 2:], 0)
    again, _ = gp.stack_layers((x, idx))
    np.testing.assert_array_equal(again, stacked)
    with pytest.raises(ValueError, match="sample counts"):
        gp.concat_layers([layers[0], layers[1][:5]])
