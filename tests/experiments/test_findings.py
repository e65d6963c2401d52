"""Verdicts come from the tables: a rising effect in a model that learned is 'reproduced', the
reverse 'not reproduced', and anything about a model that did not learn 'not testable'."""

import pandas as pd
import pytest

from geomjax.experiments import RunDir, build_report, model_learned


def _train_table(acc, chance=0.1):
    return pd.DataFrame(
        {
            "model": "word_cnn_word",
            "epoch": [0, 1, 2],
            "val_loss": [2.3, 1.5, 1.0],
            "val_accuracy": [chance, acc / 2, acc],
            "chance": chance,
        }
    )


def _geometry(rise: bool):
    rows = []
    for weights in ("initial", "trained"):
        for i, layer in enumerate(["conv1", "conv2", "fc6"]):
            up = weights == "trained" and rise
            down = weights == "trained" and not rise
            cap = 1.0 + (1.5 * i if up else 0.0) - (0.3 * i if down else 0.0)
            rows.append(
                {
                    "model": "word_cnn_word",
                    "weights": weights,
                    "label_type": "word",
                    "layer": layer,
                    "layer_index": i,
                    "n": 3,
                    "capacity_ratio": cap,
                    "capacity_ratio_lo": cap - 0.1,
                    "capacity_ratio_hi": cap + 0.1,
                    "radius": 1.0 - (0.2 * i if up else 0),
                    "dimension_ratio": 0.5 - (0.1 * i if up else 0),
                    "center_correlation": 0.3 - (0.05 * i if up else 0),
                    "d_pr": 10.0,
                    "d_ev": 5.0,
                    "capacity": cap * 0.1,
                }
            )
    return pd.DataFrame(rows)


def _verdict(tmp_path, acc, rise):
    run = RunDir(tmp_path / f"r{acc}{rise}", {"profile": "test"})
    run.save_table("train_word_cnn_word", _train_table(acc))
    run.save_table("stephenson_layers", _geometry(rise))
    rep = build_report(run, "test")
    sec = next(s for s in rep.sections if "Stephenson" in s.title)
    f = next(f for f in sec.findings if f.claim.startswith("Word-manifold capacity rises"))
    return f, rep


@pytest.mark.parametrize(
    "acc, rise, expected",
    [
        (0.8, True, "reproduced"),
        (0.8, False, "not reproduced"),
        (0.15, True, "not testable"),  # the model did not learn: no claim can be tested
    ],
)
def test_word_capacity_verdict(tmp_path, acc, rise, expected):
    f, rep = _verdict(tmp_path, acc, rise)
    assert f.verdict == expected
    assert "conv1" in f.measured and "fc6" in f.measured


def test_model_learned_rules(tmp_path):
    run = RunDir(tmp_path / "r", {})
    run.save_table("train_word_cnn_word", _train_table(0.5))
    ok, txt = model_learned(run, "word_cnn_word")
    assert ok and "50.0%" in txt and "chance 10.0%" in txt
    run.save_table(
        "train_ds2",
        pd.DataFrame(
            {
                "epoch": [0, 1],
                "val_loss": [300.0, 250.0],
                "val_cer": [1.0, 0.95],
                "val_wer": [1.0, 1.0],
            }
        ),
    )
    ok, txt = model_learned(run, "ds2")
    assert ok is False and "CER 0.95" in txt
    assert model_learned(run, "transformer")[0] is None


def test_report_sections_render_without_tables(tmp_path):
    run = RunDir(tmp_path / "empty", {})
    rep = build_report(run, "test")
    html = rep.to_html()
    assert "has not run" in html
    assert sum(rep.verdict_counts().values()) == 0
