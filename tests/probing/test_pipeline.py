import jax
import numpy as np
import pytest

import geomjax.probing as gp

KW = dict(epochs=3, batch_size=64)
FRACTIONS = (0.05, 0.25)


@pytest.fixture(scope="module")
def run():
    x, y, planted, _ = gp.planted_probing_data(
        0, 500, (30, 30, 20, 40), planted_per_layer=(1, 2, 2, 3), signal=1.5, dtype=np.float64)
    st = gp.fit_standardizer(x[:400])
    xtr, xte = np.asarray(st(x[:400])), np.asarray(st(x[400:]))
    bounds = [0, 30, 60, 80, 120]
    _, idx = gp.concat_layers([xtr[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)])
    res = gp.paper_pipeline(jax.random.key(0), xtr, y[:400], xte, y[400:], idx,
                            fractions=FRACTIONS, **KW)
    return res, xtr, y[:400], xte, y[400:], idx, planted


def test_pipeline_equals_the_step_by_step_protocol(run):
    res, xtr, ytr, xte, yte, idx, _ = run
    k_probe, _, _, _, k_min = jax.random.split(jax.random.key(0), 5)
    # the fused loop trains each probe exactly as fit_probes does alone
    alone = gp.fit_probes(k_probe, xtr, ytr, **KW)
    np.testing.assert_allclose(res.probe.weights, alone.value.weights, rtol=1e-9, atol=1e-14)
    acc = np.mean(np.asarray(gp.predict(alone.value, xte)) == yte)
    assert np.isclose(float(res.all_scores.accuracy), acc)
    xs, m = gp.stack_layers((xtr, idx))
    xs_te, _ = gp.stack_layers((xte, idx))
    lay = gp.fit_probes(k_probe, xs, ytr, feature_mask=m, **KW)
    for i in range(4):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], lay.value)
        ref = np.mean(np.asarray(gp.predict(p, xs_te[i])) == yte)
        assert np.isclose(float(res.layer_scores.accuracy[i]), ref)
    ordering = gp.neuron_ordering(alone.value.weights, stride=1000)
    np.testing.assert_array_equal(res.order, ordering.order)
    ms = gp.minimal_neuron_set(k_min, ordering, xtr, ytr, xte, yte,
                               oracle_accuracy=res.all_scores.accuracy, fractions=FRACTIONS, **KW)
    np.testing.assert_allclose(res.minimal_scores.accuracy, ms.accuracy)
    assert int(res.minimal_chosen) == int(ms.chosen)
    masks = gp.ablation_masks(jax.random.split(jax.random.key(0), 5)[3], ordering, 0.2)
    abl = gp.evaluate_masks(alone.value, xte, yte, masks)
    np.testing.assert_allclose(res.ablation_scores.accuracy, abl.accuracy)
    assert float(res.majority) == float(gp.majority_baseline(ytr, yte))


def test_pipeline_tables(run):
    res, *_ = run
    df = res.to_frame()
    assert set(df.analysis) >= {"oracle", "control", "selectivity", "majority", "ablation",
                                "layer", "minimal_set (chosen)"}
    assert len(df) == 4 + 3 + len(FRACTIONS) + 4
    sel = df.loc[df.analysis == "selectivity", "accuracy"].item()
    assert np.isclose(sel, float(res.all_scores.accuracy - res.control_scores.accuracy))
    dist = res.layer_distribution_frame()
    assert len(dist) == 2 * 4
    top = dist[dist.selection == "top"].n_selected.sum()
    assert top == round(0.2 * 120)


@pytest.mark.slow
def test_tasks_and_seeds_batched_equal_single_runs(run):
    _, xtr, ytr, xte, yte, idx, _ = run
    ys_tr = np.stack([ytr, ytr % 2])
    ys_te = np.stack([yte, yte % 2])
    keys = jax.random.split(jax.random.key(1), 2)
    batched = gp.paper_pipeline(keys, xtr, ys_tr, xte, ys_te, idx, n_classes=5,
                                fractions=FRACTIONS, **KW)
    assert batched.all_scores.accuracy.shape == (2, 2)
    for t in range(2):
        for s in range(2):
            one = gp.paper_pipeline(keys[s], xtr, ys_tr[t], xte, ys_te[t], idx, n_classes=5,
                                    fractions=FRACTIONS, **KW)
            np.testing.assert_allclose(batched.probe.weights[t, s], one.probe.weights,
                                       rtol=1e-9, atol=1e-14)
            np.testing.assert_allclose(batched.minimal_scores.accuracy[t, s],
                                       one.minimal_scores.accuracy)
    assert len(batched.to_frame()) == 4 * (4 + 3 + len(FRACTIONS) + 4)


@pytest.mark.gpu
def test_pipeline_on_gpu_matches_cpu(run):
    res, xtr, ytr, xte, yte, idx, _ = run
    gpu = jax.devices("gpu")[0]
    with jax.default_device(gpu):
        g = gp.paper_pipeline(jax.random.key(0), xtr, ytr, xte, yte, idx, fractions=FRACTIONS,
                              **KW)
    np.testing.assert_allclose(np.asarray(g.probe.weights), np.asarray(res.probe.weights),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(g.order)[:10], np.asarray(res.order)[:10])


def test_batched_tasks_tables(run):
    """Several tasks at once (labels ``(T, N)``) and seeds: one row group per run, finite values,
    the expected columns, task/seed ids taken from the right axes."""
    _, xtr, ytr, xte, yte, idx, _ = run
    ys_tr = np.stack([ytr, ytr % 2, (ytr >= 3).astype(ytr.dtype)])
    ys_te = np.stack([yte, yte % 2, (yte >= 3).astype(yte.dtype)])
    res = gp.paper_pipeline(jax.random.key(2), xtr, ys_tr, xte, ys_te, idx, n_classes=5,
                            fractions=FRACTIONS, **KW)
    assert res.batch_axes == ("task",)
    df = res.to_frame()
    per_run = 4 + 3 + len(FRACTIONS) + 4
    assert list(df.columns) == ["task", "seed", "analysis", "subset", "n_neurons", "accuracy",
                                "f1", "mcc"]
    sizes = df.groupby(["task", "seed"]).size()
    assert sizes.index.tolist() == [(0, 0), (1, 0), (2, 0)]
    assert (sizes == per_run).all()
    assert np.isfinite(df.accuracy).all()
    probes = df[~df.analysis.isin(["selectivity", "majority"])]
    assert np.isfinite(probes[["f1", "mcc"]].to_numpy()).all()
    for t in range(3):
        g = df[df.task == t]
        assert g.loc[g.analysis == "oracle", "accuracy"].item() == pytest.approx(
            float(res.all_scores.accuracy[t]))
        assert (g.analysis == "minimal_set (chosen)").sum() == 1
    dist = res.layer_distribution_frame()
    assert list(dist.columns) == ["task", "seed", "selection", "layer", "n_selected",
                                  "layer_width", "fraction_of_layer"]
    assert (dist.groupby(["task", "seed"]).size() == 2 * 4).all()
    assert dist.task.nunique() == 3
    for t in range(3):
        top = dist[(dist.task == t) & (dist.selection == "top")].n_selected.sum()
        assert top == round(0.2 * 120)
        mins = dist[(dist.task == t) & (dist.selection == "minimal")].n_selected.sum()
        chosen = int(res.minimal_chosen[t])
        assert mins == int(res.minimal_n[t][chosen])
    assert np.isfinite(dist.fraction_of_layer).all()


def test_batched_seeds_only_are_labelled_as_seeds(run):
    _, xtr, ytr, xte, yte, idx, _ = run
    keys = jax.random.split(jax.random.key(3), 2)
    res = gp.paper_pipeline(keys, xtr, ytr, xte, yte, idx, fractions=FRACTIONS, **KW)
    assert res.batch_axes == ("seed",)
    df = res.to_frame()
    assert set(df.task) == {0} and set(df.seed) == {0, 1}
    assert set(res.layer_distribution_frame().seed) == {0, 1}


def test_pipeline_timings_breakdown(run):
    """``timings=`` fills one entry per stage and leaves the results unchanged."""
    res, xtr, ytr, xte, yte, idx, _ = run
    tm = {}
    again = gp.paper_pipeline(jax.random.key(0), xtr, ytr, xte, yte, idx, fractions=FRACTIONS,
                              timings=tm, **KW)
    assert len(tm) == 5 and any(k.startswith("minimal set") for k in tm)
    assert all(v["wall_s"] >= 0 and v["cpu_s"] >= 0 for v in tm.values())
    np.testing.assert_array_equal(again.order, res.order)
    np.testing.assert_array_equal(again.minimal_scores.accuracy, res.minimal_scores.accuracy)


def test_pipeline_leaves_device_inputs_untouched(run):
    """A jax.Array input is never reordered in place (only the private copy of a host array is)."""
    res, xtr, ytr, xte, yte, idx, _ = run
    dx = jax.numpy.asarray(xtr)
    again = gp.paper_pipeline(jax.random.key(0), dx, ytr, xte, yte, idx, fractions=FRACTIONS, **KW)
    np.testing.assert_array_equal(np.asarray(dx), xtr)
    np.testing.assert_array_equal(again.order, res.order)
    np.testing.assert_allclose(again.minimal_scores.accuracy, res.minimal_scores.accuracy)


def test_inplace_column_order_with_row_blocks_and_a_tail(monkeypatch):
    from geomjax.probing import _pipeline

    rng = np.random.default_rng(5)
    x = rng.standard_normal((23, 7)).astype(np.float32)
    order = rng.permutation(7).astype(np.int32)
    monkeypatch.setattr(_pipeline, "_PERMUTE_BLOCK_BYTES", 5 * 7 * 4)  # 5 rows: 4 blocks + 3
    out = _pipeline._permute_columns_inplace(jax.device_put(x, may_alias=False), order, n_cols=5)
    np.testing.assert_array_equal(np.asarray(out)[:, :5], x[:, order[:5]])
