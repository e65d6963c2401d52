"""The model benchmark runs end to end in smoke mode (tiny sizes, random data, nothing recorded)."""

from __future__ import annotations


def test_bench_models_smoke(capsys):
    from benchmarks import bench_models

    bench_models.main(["--smoke", "--no-record"])
    out = capsys.readouterr().out
    assert "| ds2 | paper | 41171968 | 41187968 | 41190000 | 1 |" in out
    assert "phone_mlp" in out and "step s" in out and "met" in out
