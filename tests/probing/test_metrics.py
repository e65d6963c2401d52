import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

import geomjax.probing as gp


def test_metrics_match_sklearn(rng):
    for c in (2, 4):
        y = rng.integers(0, c, 60)
        p = np.where(rng.random(60) < 0.6, y, rng.integers(0, c, 60))
        s = gp.scores(y, p, c)
        assert np.isclose(s.accuracy, accuracy_score(y, p))
        assert np.isclose(s.f1, f1_score(y, p, average="macro", labels=list(range(c))))
        assert np.isclose(s.mcc, matthews_corrcoef(y, p))
    # degenerate prediction: MCC 0 as scikit-learn
    assert float(gp.scores(np.array([0, 1, 1]), np.array([1, 1, 1]), 2).mcc) == 0.0
