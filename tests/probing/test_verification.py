import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import geomjax.probing as gp


def _brute(scores, labels, p_target=0.01):
    """Every threshold x every trial: the documented "min-gap" convention, by brute force."""
    thr = np.concatenate([np.unique(scores), [np.inf]])
    acc = scores[None, :] >= thr[:, None]  # (T, n)
    frr = (~acc & labels).sum(1) / labels.sum()
    far = (acc & ~labels).sum(1) / (~labels).sum()
    gap = np.abs(far - frr)
    i = np.flatnonzero(gap == gap.min())[0]  # ties: lowest threshold
    dcf = (p_target * frr + (1 - p_target) * far) / min(p_target, 1 - p_target)
    return (far[i] + frr[i]) / 2, thr[i], dcf.min()


@given(
    n=st.sampled_from([8, 32]),
    levels=st.sampled_from([3, 10, 0]),  # few distinct values -> many ties; 0 -> continuous
    seed=st.integers(0, 2**16),
)
def test_eer_and_min_dcf_match_brute_force(n, levels, seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, bool)
    labels[rng.choice(n, size=rng.integers(1, n), replace=False)] = True
    scores = rng.standard_normal(n) + labels
    if levels:
        scores = np.round(scores * levels / 4) / levels
    e, t, d = _brute(scores, labels)
    got = gp.eer(scores, labels)
    assert np.isclose(float(got.value), e, atol=1e-12)
    assert float(got.threshold) == t
    assert np.isclose(float(gp.min_dcf(scores, labels).value), d, atol=1e-12)


def test_eer_simple_cases():
    labels = np.array([1, 1, 0, 0], bool)
    assert float(gp.eer([0.9, 0.8, 0.1, 0.2], labels).value) == 0.0
    assert float(gp.eer([0.1, 0.2, 0.9, 0.8], labels).value) == 1.0
    assert float(gp.eer([0.5, 0.5, 0.5, 0.5], labels).value) == 0.5  # all tied: one point


def test_cosine_scores_of_length_normalised_embeddings(rng):
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    ref = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(gp.cosine_scores(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(gp.cosine_scores(3 * a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(gp.length_normalize(a), axis=1), 1, rtol=1e-12)


def test_verification_bad_input():
    with pytest.raises(ValueError, match="both target"):
        gp.eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        gp.eer([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        gp.eer([0.1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        gp.eer([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="shape"):
        gp.cosine_scores(np.ones((2, 3)), np.ones((3, 3)))
