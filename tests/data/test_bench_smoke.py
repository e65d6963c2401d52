"""The data benchmark runs end to end at smoke size (agreement with librosa checked first)."""

from __future__ import annotations

import pytest

from geomjax.data import espeak_available


@pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
def test_bench_data_smoke():
    from benchmarks import bench_data

    syn, feats, coch = bench_data.main(["--smoke", "--no-record"])
    assert syn["utterances"] > 0 and syn["x real time"] > 0
    assert [r["front end"] for r in feats] == ["log_mel", "mfcc", "ds2"]
    assert all(r["max abs diff vs librosa"] < 0.02 for r in feats)
    assert coch["clips"] == 4
