"""Extraction methods, metrics and vector files on synthetic activations with a planted direction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from repro.errors import InputError
from repro.vector_metrics import choose_layer_method, evaluate_vectors, project, split_heldout
from repro.vectors import METHODS, extract_vectors, fit_probe, gradient_vectors, load_vectors, save_vectors

L, D = 3, 256


def planted(n_pos=40, n_neg=40, layers=L, dim=D, sep=4.0, seed=0):
    """Noise around a shared offset, classes shifted +-sep/2 along a unit direction per layer."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(layers, dim, generator=gen)
    direction /= direction.norm(dim=-1, keepdim=True)
    offset = 5.0 * torch.randn(layers, dim, generator=gen)
    pos = torch.randn(n_pos, layers, dim, generator=gen) + offset + sep / 2 * direction
    neg = torch.randn(n_neg, layers, dim, generator=gen) + offset - sep / 2 * direction
    return pos, neg, direction


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


@pytest.fixture(scope="module")
def data():
    # Many examples relative to D so mean_diff and the probe can find the direction.
    return planted(n_pos=200, n_neg=200, sep=6.0)


@pytest.fixture(scope="module")
def vectors(data):
    pos, neg, _ = data
    return extract_vectors(pos, neg, METHODS, seed=0)


def test_shapes_and_dtype(vectors):
    assert set(vectors) == set(METHODS)
    for name, v in vectors.items():
        assert v.shape == (L, D), name
        assert v.dtype == torch.float32, name
        assert torch.isfinite(v).all(), name


def test_probe_and_mean_diff_recover_planted_direction(data, vectors):
    _, _, direction = data
    for name in ("probe", "mean_diff"):
        assert (cos(vectors[name], direction) >= 0.9).all(), (name, cos(vectors[name], direction))


def test_gradient_points_at_direction_and_converges_with_more_steps(data, vectors):
    # Faithful settings (Adam lr 0.01, 100 steps from v0 ~ N(0, I)) move each coordinate by at
    # most ~1, so at D=256 the result is still partly the random start: clearly aligned, not 0.9.
    pos, neg, direction = data
    c = cos(vectors["gradient"], direction)
    assert (c >= 0.35).all() and c.mean() >= 0.5, c
    # The optimiser itself is right: given enough steps it reaches the direction.
    diff = pos.mean(0) - neg.mean(0)
    long_run = gradient_vectors(diff, seed=0, steps=2000)
    assert (cos(long_run, direction) >= 0.9).all()
    assert torch.allclose(long_run.norm(dim=-1), torch.ones(L), atol=1e-5)


def test_random_does_not_recover_direction(data, vectors):
    _, _, direction = data
    assert (cos(vectors["random"], direction).abs() < 0.3).all()
    assert torch.allclose(vectors["random"].norm(dim=-1), torch.ones(L), atol=1e-5)


def test_polarity_positive_class_projects_higher(data, vectors):
    pos, neg, _ = data
    for name in ("probe", "gradient", "mean_diff", "ica", "pca_diff"):
        gap = project(pos, vectors[name]).mean(0) - project(neg, vectors[name]).mean(0)
        assert (gap > 0).all(), (name, gap)


def test_seeding(data):
    pos, neg, _ = data
    a = extract_vectors(pos, neg, METHODS, seed=3)
    b = extract_vectors(pos, neg, METHODS, seed=3)
    c = extract_vectors(pos, neg, ["random", "gradient"], seed=4)
    for name in METHODS:
        assert torch.equal(a[name], b[name]), name
    assert not torch.allclose(a["random"], c["random"])
    assert not torch.allclose(a["gradient"], c["gradient"])
    # The gradient method's start must not be the random baseline's vector.
    assert (cos(a["gradient"], a["random"]).abs() < 0.9).all()


def test_probe_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    pos, neg, _ = planted(n_pos=30, n_neg=25, dim=120, sep=2.0, seed=1)  # N < D: dual path
    coef, intercept = fit_probe(pos, neg)
    for layer in range(L):
        x = torch.cat([pos[:, layer], neg[:, layer]]).numpy()
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=42).fit(x, y)
        c = float(cos(coef[layer], torch.from_numpy(clf.coef_[0]).double()))
        assert c >= 0.99, (layer, c)
        ours = ((torch.from_numpy(x).double() @ coef[layer] + intercept[layer]) > 0).numpy()
        assert abs(ours.mean() - clf.predict(x).mean()) <= 0.01
        # Same objective (C * logloss + 0.5|w|^2): our exact optimum is never worse than sklearn's.
        def objective(w, b):
            z = x.astype(np.float64) @ w + b
            return np.logaddexp(0, -(2 * y - 1) * z).sum() + 0.5 * w @ w
        assert objective(coef[layer].numpy(), intercept[layer].item()) <= objective(clf.coef_[0], clf.intercept_[0]) + 1e-6


def test_probe_primal_path_when_dim_below_n():
    from sklearn.linear_model import LogisticRegression

    pos, neg, _ = planted(n_pos=60, n_neg=60, dim=10, sep=1.0, seed=2)  # D < N: primal path
    coef, _ = fit_probe(pos, neg)
    x = torch.cat([pos[:, 0], neg[:, 0]]).numpy()
    y = np.r_[np.ones(60), np.zeros(60)]
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    assert float(cos(coef[0], torch.from_numpy(clf.coef_[0]).double())) >= 0.999


def test_ica_matches_sklearn_fastica_first_column():
    from sklearn.decomposition import FastICA

    pos, neg, _ = planted(n_pos=20, n_neg=20, dim=60, sep=3.0, seed=3)
    ours = extract_vectors(pos, neg, ["ica"], seed=0)["ica"]
    # The original fixed FastICA's random_state at 42: the run seed must not move ICA.
    assert torch.equal(ours, extract_vectors(pos, neg, ["ica"], seed=7)["ica"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for layer in range(L):
            x = torch.cat([pos[:, layer], neg[:, layer]]).double().numpy()
            ica = FastICA(n_components=min(50, len(x) - 1), random_state=42).fit(x)
            ref = torch.from_numpy(ica.mixing_[:, 0])
            # Same column up to the polarity flip we apply (sklearn does not orient it).
            assert float(cos(ours[layer].double(), ref).abs()) >= 0.99


def test_ica_separation_option_separates_at_least_as_well(data):
    pos, neg, _ = data
    first = extract_vectors(pos, neg, ["ica"], seed=0, ica_select="first")["ica"]
    best = extract_vectors(pos, neg, ["ica"], seed=0, ica_select="separation")["ica"]
    rows_first = evaluate_vectors({"ica": first}, pos, neg)
    rows_best = evaluate_vectors({"ica": best}, pos, neg)
    for a, b in zip(rows_first, rows_best):
        assert abs(b["cohens_d"]) >= abs(a["cohens_d"]) - 1e-6


def test_pca_diff_is_full_dimensional_unit_vector(data, vectors):
    # Regression test for the original's 1-element pca_diff vector.
    v = vectors["pca_diff"]
    assert v.shape == (L, D)
    assert torch.allclose(v.norm(dim=-1), torch.ones(L), atol=1e-5)
    assert (v != 0).sum(-1).min() > D // 2


def test_pca_diff_finds_direction_of_varying_pair_difference():
    # Paired differences vary mostly along one axis -> that axis is the first component.
    gen = torch.Generator().manual_seed(5)
    axis = torch.zeros(L, D)
    axis[:, 7] = 1.0
    neg = torch.randn(50, L, D, generator=gen)
    scale = torch.linspace(0.0, 10.0, 50)[:, None, None]
    pos = neg + 0.05 * torch.randn(50, L, D, generator=gen) + scale * axis + 1.0 * axis
    v = extract_vectors(pos, neg, ["pca_diff"])["pca_diff"]
    assert (v[:, 7] > 0.99).all()  # oriented: pos projects higher


def test_bad_inputs_raise_one_line_errors():
    pos, neg, _ = planted(n_pos=5, n_neg=5)
    with pytest.raises(InputError, match="unknown method"):
        extract_vectors(pos, neg, ["probe", "lda"])
    with pytest.raises(InputError, match=r"\[N, L, D\]"):
        extract_vectors(pos[:, 0], neg, ["probe"])
    with pytest.raises(InputError, match="differ"):
        extract_vectors(pos, neg[:, :, :10], ["probe"])
    bad = pos.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        extract_vectors(bad, neg, ["mean_diff"])
    with pytest.raises(InputError, match="ica_select"):
        extract_vectors(pos, neg, ["ica"], ica_select="best")


# ------------------------------------------------------------------------------- metrics


def test_metrics_on_separable_and_identical_data():
    pos, neg, direction = planted(n_pos=100, n_neg=100, sep=40.0, seed=6)
    rows = evaluate_vectors({"planted": direction, "flipped": -direction}, pos, neg)
    good = [r for r in rows if r["method"] == "planted"]
    flipped = [r for r in rows if r["method"] == "flipped"]
    assert len(rows) == 2 * L
    for r in good:
        assert r["accuracy"] == 1.0 and r["auroc"] == 1.0 and r["polarity_correct"]
        assert r["cohens_d"] > 2 and r["p_value"] < 1e-10
    for r in flipped:
        assert r["cohens_d"] < -2 and not r["polarity_correct"] and r["accuracy"] == 0.0

    # Same distribution for both classes: chance level.
    gen = torch.Generator().manual_seed(7)
    same_pos = torch.randn(2000, L, D, generator=gen)
    same_neg = torch.randn(2000, L, D, generator=gen)
    for r in evaluate_vectors({"planted": direction}, same_pos, same_neg):
        assert abs(r["accuracy"] - 0.5) < 0.05
        assert abs(r["auroc"] - 0.5) < 0.05
        assert abs(r["cohens_d"]) < 0.15


def test_metrics_follow_the_original_definitions():
    # The original library's metrics (traitlens metrics.py), on cosine projections: Cohen's d over
    # sqrt((var_pos + var_neg) / 2) with ddof=1, reported as |d|; Student's t-test (scipy default).
    from scipy import stats

    gen = torch.Generator().manual_seed(9)
    direction = torch.randn(1, 32, generator=gen)
    pos = torch.randn(12, 1, 32, generator=gen) + 0.4 * direction  # unequal class sizes and spreads
    neg = 3.0 * torch.randn(30, 1, 32, generator=gen)
    for sign in (1.0, -1.0):
        (row,) = evaluate_vectors({"v": sign * direction}, pos, neg)
        unit = sign * direction[0].double() / direction[0].double().norm()
        p = (pos[:, 0].double() / pos[:, 0].double().norm(dim=-1, keepdim=True)) @ unit
        q = (neg[:, 0].double() / neg[:, 0].double().norm(dim=-1, keepdim=True)) @ unit
        d_orig = ((p.mean() - q.mean()).abs() / torch.sqrt((p.std() ** 2 + q.std() ** 2) / 2)).item()
        assert row["effect_size"] == pytest.approx(d_orig, rel=1e-9)
        assert row["cohens_d"] == pytest.approx(torch.sign(p.mean() - q.mean()).item() * d_orig, rel=1e-9)
        assert (row["cohens_d"] > 0) == row["polarity_correct"] == (sign > 0)
        student = stats.ttest_ind(p.numpy(), q.numpy()).pvalue
        welch = stats.ttest_ind(p.numpy(), q.numpy(), equal_var=False).pvalue
        assert row["p_value"] == pytest.approx(student, rel=1e-9)
        assert abs(student - welch) > 1e-3 * student  # the data tell the two tests apart


def test_split_heldout_is_deterministic_and_disjoint(data):
    pos, neg, _ = data
    a = split_heldout(pos, neg, 0.2, seed=0)
    b = split_heldout(pos, neg, 0.2, seed=0)
    c = split_heldout(pos, neg, 0.2, seed=1)
    assert a.pos_val_idx == b.pos_val_idx and a.neg_val_idx == b.neg_val_idx
    assert a.pos_val_idx != c.pos_val_idx
    assert len(a.pos_val) == 40 and len(a.pos_train) == 160
    assert torch.equal(a.pos_val, pos[a.pos_val_idx])
    with pytest.raises(InputError, match="heldout_fraction"):
        split_heldout(pos, neg, 1.5, seed=0)


def test_project_uses_unit_vector_and_raw_activations():
    acts = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    vec = torch.tensor([2.0, 0.0])
    assert torch.allclose(project(acts, vec), torch.tensor([3.0, 1.0]))
    assert torch.allclose(project(acts, vec, normalize_vector=False), torch.tensor([6.0, 2.0]))
    assert project(torch.ones(5, L, D), torch.ones(L, D)).shape == (5, L)
    with pytest.raises(InputError, match="do not match"):
        project(torch.ones(5, D), torch.ones(L, D))


def test_choose_layer_method_reports_configured_and_best(data, vectors):
    pos, neg, _ = data
    rows = evaluate_vectors(vectors, pos, neg)
    pick = choose_layer_method(rows, method="random", layer=1)
    assert (pick["method"], pick["layer"]) == ("random", 1) and "configured" in pick["rule"]
    assert pick["best"]["accuracy"] >= pick["chosen"]["accuracy"]
    auto = choose_layer_method(rows)
    assert auto["chosen"] == auto["best"] and auto["method"] != "random"
    with pytest.raises(InputError, match="not in the extraction grid"):
        choose_layer_method(rows, method="probe", layer=99)


# ------------------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path, vectors):
    path = tmp_path / "vectors" / "refusal.safetensors"
    save_vectors(path, vectors, {"model": "base", "layers": L, "methods": list(METHODS)})
    loaded, meta = load_vectors(path)
    assert set(loaded) == set(vectors)
    for name in vectors:
        assert torch.equal(loaded[name], vectors[name])
    assert meta["model"] == "base" and meta["layers"] == str(L) and "probe" in meta["methods"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_load_vectors_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_vectors(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_vectors(corrupt)


def test_bench_runs_small_and_agrees():
    from repro.bench.extraction import run_extraction_bench

    result = run_extraction_bench(n=40, layers=2, dim=64, seed=0, repeats=2)
    assert result["probe_accuracy"]["agree_within_1_point"]
    assert result["cosine_batched_vs_loop"]["probe"] >= 0.99
    assert result["cosine_batched_vs_loop"]["mean_diff"] >= 0.999
    assert result["cosine_batched_vs_loop"]["gradient"] >= 0.999
    assert set(result["seconds"]["loop"]) == set(METHODS) and result["total_batched_s"] > 0
    # Both baselines in one run: library-default thread pools and BLAS pinned to one thread.
    assert set(result["speedup_by_loop"]) == {"library_default", "pinned_1"}
    assert result["speedup"] == min(result["speedup_by_loop"].values())
    assert result["config"]["repeats"] == 2


def test_bench_times_every_round_and_takes_medians(monkeypatch):
    """Each of `repeats` rounds runs the batched call and every loop once; the loop total is the median of
    the rounds' sums and the ratio's range spans the rounds."""
    import repro.bench.extraction as bench

    calls = []
    real_loop = bench.sklearn_loop

    def fake_loop(pos, neg, seed, blas_threads=None):
        calls.append(blas_threads)
        vecs, _ = real_loop(pos, neg, seed, blas_threads=blas_threads)
        return vecs, {m: 1.0 + len(calls) for m in METHODS}  # round r's loop "takes" 6 x (1 + r) s

    monkeypatch.setattr(bench, "sklearn_loop", fake_loop)
    result = bench.run_extraction_bench(n=40, layers=2, dim=32, seed=0, loop_blas_threads=(1, 1), repeats=3)
    assert calls == [1, 1, 1]  # a setting listed twice is timed once per round
    loop = result["loops"]["pinned_1"]
    assert loop["total_s"] == 6 * 3.0 and loop["speedup_min"] < loop["speedup"] < loop["speedup_max"]
    with pytest.raises(InputError, match="repeats"):
        bench.run_extraction_bench(n=40, layers=2, dim=32, repeats=0)


def test_mean_diff_exact_despite_huge_offset():
    # The float32 class means are corrected by their residuals: a 1e4 offset must not eat the
    # 1e-3-scale class difference (a plain float32 mean loses it to rounding).
    gen = torch.Generator().manual_seed(5)
    offset = 1e4 * torch.randn(1, 2, 64, generator=gen)
    pos = offset + 1e-3 * torch.randn(50, 2, 64, generator=gen) + 1e-3
    neg = offset + 1e-3 * torch.randn(50, 2, 64, generator=gen)
    got = extract_vectors(pos, neg, ["mean_diff"])["mean_diff"].double()
    want = pos.double().mean(0) - neg.double().mean(0)
    assert torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()


def test_probe_matches_sklearn_on_skewed_spectrum():
    # Real residual streams have a few huge-mean dimensions and feature scales over orders of
    # magnitude; the float32 Gram + float64 dual solve must still agree with sklearn.
    from sklearn.linear_model import LogisticRegression

    gen = torch.Generator().manual_seed(8)
    dim, n = 1500, 80
    scales = torch.logspace(-2, 2, dim)[torch.randperm(dim, generator=gen)]
    mean = 5.0 * torch.randn(1, dim, generator=gen)
    mean[:, :3] = 500.0
    direction = torch.randn(1, dim, generator=gen)
    direction /= direction.norm()
    pos = (torch.randn(n, 1, dim, generator=gen) * scales + mean + direction)
    neg = (torch.randn(n, 1, dim, generator=gen) * scales + mean - direction)
    coef, _ = fit_probe(pos, neg)
    x = torch.cat([pos[:, 0], neg[:, 0]]).numpy()
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=42).fit(x, np.r_[np.ones(n), np.zeros(n)])
    assert float(cos(coef[0], torch.from_numpy(clf.coef_[0]).double())) >= 0.99
