"""Centre subspaces of many analyses fitted together (the accelerator path of sweeps), run here
on CPU by asking for it: each analysis must get what its own fit gives it (to round-off), and
the vmapped-restart path of a single fit must agree with the sequential one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geomjax.distributed import make_mesh, mftma_sweep, sweep_keys
from geomjax.manifold import fit_center_subspace, fit_center_subspaces, mftma
import geomjax.manifold._center as center_mod
import geomjax.manifold._mftma as mftma_mod
from geomjax.manifold._center import _fit_ks, center_basis

N_REPS = 3


def _centers(P, N=16, seed=0, shared=0.0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((P, N))
    if shared:  # three shared directions raise the centre correlation
        c += rng.standard_normal((P, 3)) @ (shared * rng.standard_normal((3, N)))
    return c


def _projector(V):
    V = np.asarray(V, np.float64)
    return V @ V.T


def _same_fit(a, b):
    assert a["K"] == b["K"] and a["n_k_tried"] == b["n_k_tried"], (a["K"], b["K"])
    assert bool(a["converged"]) and bool(b["converged"])
    assert float(a["grad_norm"]) <= 1e-6 and float(b["grad_norm"]) <= 1e-6
    np.testing.assert_allclose(float(a["residual_correlation"]), float(b["residual_correlation"]),
                               rtol=1e-10)
    np.testing.assert_allclose(float(a["center_correlation"]), float(b["center_correlation"]),
                               rtol=1e-12)
    np.testing.assert_allclose(_projector(a["V"]), _projector(b["V"]), atol=1e-8)


@pytest.fixture(scope="module")
def analyses():
    # P = 8 with three strong shared directions: the K search of some analyses runs past the
    # first block of five ranks (the rank-by-rank batches); the last set has another shape
    # (a second batch).
    cs = [_centers(8, seed=s, shared=sh) for s, sh in [(3, 3.0), (1, 1.0), (2, 3.0)]]
    cs += [_centers(6, N=12, seed=3, shared=1.0)]
    keys = list(jax.random.split(jax.random.key(11), len(cs)))
    return keys, cs


@pytest.mark.parametrize("K", [None, 2])
def test_batched_fits_equal_one_by_one(analyses, K, monkeypatch):
    """Against one fit per analysis with its restarts vmapped (what an accelerator runs): the
    same lanes, so the same iterates. (One restart after the other, as on CPU, rounds
    differently, and a non-convex fit can then end in another local minimum: see below.)"""
    keys, cs = analyses
    if K is None:  # one shape (the rank-by-rank phase); a fixed K takes both shapes
        keys, cs = keys[:3], cs[:3]
    monkeypatch.setattr(center_mod, "_restarts_batched", lambda: True)
    ref = [fit_center_subspace(k, c, K, n_reps=N_REPS) for k, c in zip(keys, cs)]
    got = fit_center_subspaces(keys, cs, K, n_reps=N_REPS, batched=True)
    assert len(got) == len(cs)
    for a, b in zip(ref, got):
        _same_fit(a, b)
        V = np.asarray(b["V"])
        np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-10)
    if K is None:  # the rank-by-rank phase was exercised, and the early stop too
        assert max(r["n_k_tried"] for r in ref) > 5 and min(r["n_k_tried"] for r in ref) == 5


def test_unbatched_is_exactly_one_by_one(analyses):
    keys, cs = analyses
    keys, cs = keys[:2], cs[:2]
    ref = [fit_center_subspace(k, c, None, n_reps=N_REPS) for k, c in zip(keys, cs)]
    got = fit_center_subspaces(keys, cs, None, n_reps=N_REPS, batched=False)
    for a, b in zip(ref, got):
        assert a["K"] == b["K"]
        np.testing.assert_array_equal(np.asarray(a["V"]), np.asarray(b["V"]))


def test_vmapped_restarts_equal_sequential():
    """Restarts vmapped (accelerators) or one after the other (CPU) round differently; on ranks
    with a well-separated optimum both end at it (to ~gtol / curvature)."""
    X, _ = center_basis(jnp.asarray(_centers(7, seed=5, shared=1.0)))
    key = jax.random.key(2)
    seq = _fit_ks(key, X, (1, 2), N_REPS, 1000, 1e-6, False)
    vec = _fit_ks(key, X, (1, 2), N_REPS, 1000, 1e-6, True)
    for a, b in zip(seq, vec):
        assert bool(a[2]) and bool(b[2])
        np.testing.assert_allclose(float(a[1]), float(b[1]), rtol=1e-6)
        np.testing.assert_allclose(_projector(a[0]), _projector(b[0]), atol=1e-4)


def test_k_zero_and_degenerate_sets():
    keys = list(jax.random.split(jax.random.key(0), 2))
    out = fit_center_subspaces(keys, [_centers(5), _centers(2)], 0, batched=True)
    assert [o["K"] for o in out] == [0, 0] and all(o["V"].shape[1] == 0 for o in out)
    # P = 2: only K = 1 = P - 1 exists, which removes every centre direction: nothing removed.
    out = fit_center_subspaces(keys, [_centers(2), _centers(2, seed=1)], None, n_reps=2,
                               batched=True)
    assert [o["K"] for o in out] == [0, 0]


def test_errors_name_the_analysis():
    keys = list(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="one entry per analysis"):
        fit_center_subspaces(keys, [_centers(5)], None, batched=True)
    with pytest.raises(ValueError, match="analysis 1: .*K"):
        fit_center_subspaces(keys, [_centers(5), _centers(3)], 4, batched=True)
    with pytest.raises(ValueError, match="analysis 0: .*P >= 2"):
        fit_center_subspaces(keys, [np.ones((1, 4)), _centers(3)], None, batched=True)


@pytest.mark.parametrize("device_path", [False, True], ids=["host-pass", "device-pass"])
def test_sweep_with_batched_centre_fits_equals_mftma(monkeypatch, device_path):
    """The accelerator flow of a sweep: restarts vmapped, centre subspaces of all analyses
    fitted together, and (device-pass) the data passes on the device, whose copy of each input
    is dropped between the centres and the reduction and made again."""
    monkeypatch.setattr(center_mod, "_restarts_batched", lambda: True)
    if device_path:
        monkeypatch.setattr(mftma_mod, "_host_pass", lambda backend, reduction: False)
    rng = np.random.default_rng(4)
    sets = [rng.standard_normal((6, 8, 20)) + 3 * rng.standard_normal((6, 1, 20))
            for _ in range(3)]
    key = jax.random.key(9)
    # K = 1 (one rank program; the K search is checked above): the wiring through the sweep.
    got = mftma_sweep(key, sets, n_t=12, K=1, n_reps=N_REPS, mesh=make_mesh(1),
                      center_batched=True)
    for k, s, g in zip(sweep_keys(key, len(sets)), sets, got):
        r = mftma(k, s, n_t=12, K=1, n_reps=N_REPS)
        assert r.K == g.K
        np.testing.assert_allclose(float(g.capacity), float(r.capacity), rtol=1e-9)
        np.testing.assert_allclose(float(g.radius), float(r.radius), rtol=1e-9)
        np.testing.assert_allclose(float(g.residual_center_correlation),
                                   float(r.residual_center_correlation), rtol=1e-9)
