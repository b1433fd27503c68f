"""Trait-vector extraction: six methods, every layer at once.

Inputs are pooled activations per example and layer: `pos` [N, L, D] (the trait class, e.g.
harmful prompts) and `neg` [M, L, D]. Every method returns one vector per layer, [L, D] float32.
Definitions follow the original code (FACTS.md, "The six extraction methods"); departures:

- every method is seeded: gradient and random from per-method streams of the run seed (the
  original left them unseeded); ICA keeps the original's fixed random_state=42, whatever the
  run seed, so its first mixing column is the one the original computed on the same data;
- pca_diff returns the full D-dimensional first principal component (the original run's version
  returned a 1-element vector, a bug fixed upstream two days later);
- ica and pca_diff are sign-ambiguous, so each layer's vector is flipped to make
  mean(pos . v) > mean(neg . v) on the TRAINING data (the original did not orient them);
- ica_select="separation" (opt-in) picks the mixing column that best separates the classes,
  which the original docs promised but its code did not do (default "first" = the code).

Speed: N << D at paper size (N=200, D=5120), so probe and ICA are solved in the N-dimensional
span of the data (one Gram matrix per layer, shared by both), batched over layers.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from repro.errors import InputError
from repro.io import atomic_path

METHODS = ("probe", "gradient", "mean_diff", "ica", "pca_diff", "random")
ICA_SELECT = ("first", "separation")

# Original hyper-parameters (FACTS.md).
PROBE_C = 1.0
GRADIENT_LR = 0.01
GRADIENT_STEPS = 100
GRADIENT_NORM_PENALTY = 0.01
ICA_MAX_COMPONENTS = 50
ICA_MAX_ITER = 200  # scikit-learn FastICA defaults
ICA_TOL = 1e-4
ICA_RANDOM_STATE = 42  # the original's FastICA(random_state=42), fixed rather than the run seed

# Bytes of float32 activation copies materialised at once (bounds memory at paper size).
_CHUNK_BYTES = 256 * 2**20


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------

def extract_vectors(
    pos: torch.Tensor,
    neg: torch.Tensor,
    methods: Iterable[str] = METHODS,
    seed: int = 0,
    ica_select: str = "first",
) -> dict[str, torch.Tensor]:
    """One [L, D] float32 vector per layer for each requested method (see module docstring).

    `seed` drives gradient and random; ICA always starts from random_state ICA_RANDOM_STATE.
    """
    pos, neg = _check_inputs(pos, neg)
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"vectors.methods: unknown method(s) {unknown}; expected some of {list(METHODS)}")
    if ica_select not in ICA_SELECT:
        raise InputError(f"vectors.ica_select: got {ica_select!r}; expected one of {list(ICA_SELECT)}")

    out: dict[str, torch.Tensor] = {}
    mean_pos, mean_neg = _class_mean(pos, "pos"), _class_mean(neg, "neg")
    diff = mean_pos - mean_neg  # [L, D], used by every method but random
    span = None
    if "probe" in methods or "ica" in methods:
        pooled_mean = (len(pos) * mean_pos + len(neg) * mean_neg) / (len(pos) + len(neg))
        span = DataSpan(torch.cat([pos, neg], 0), mean=pooled_mean)
    for name in methods:
        if name == "mean_diff":
            vec = diff
        elif name == "probe":
            y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
            vec, _ = fit_probe_span(span, y, C=PROBE_C)
        elif name == "gradient":
            vec = gradient_vectors(diff.float(), seed=method_seed(seed, "gradient"))
        elif name == "ica":
            vec = ica_vectors(span, n_pos=len(pos), seed=ICA_RANDOM_STATE, select=ica_select)
            vec = _orient(vec, diff)
        elif name == "pca_diff":
            vec = _orient(pca_diff_vectors(pos, neg), diff)
        else:  # random
            vec = random_vectors(pos.shape[1], pos.shape[2], seed=method_seed(seed, "random"))
        out[name] = vec.float().contiguous()
    return out


def _check_inputs(pos, neg) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.as_tensor(pos)
    neg = torch.as_tensor(neg)
    for label, t in (("pos", pos), ("neg", neg)):
        if t.ndim != 3:
            raise InputError(f"vectors.{label}: expected activations [N, L, D], got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise InputError(f"vectors.{label}: expected a float tensor, got {t.dtype}")
        if len(t) < 2:
            raise InputError(f"vectors.{label}: need at least 2 examples, got {len(t)}")
    if pos.shape[1:] != neg.shape[1:]:
        raise InputError(f"vectors: pos {tuple(pos.shape)} and neg {tuple(neg.shape)} differ in [L, D]")
    return pos.float(), neg.float()


def _class_mean(t: torch.Tensor, label: str) -> torch.Tensor:
    """Mean over examples [L, D] as float64, accurate to float64-level relative to the spread.

    A float32 mean (8x faster than a float64-accumulating reduction at paper size) is corrected by
    the mean of the residuals t - m32, whose float32 rounding is relative to the data's spread, not
    to its (possibly huge) offset. Doubles as the NaN/inf check; a non-finite float32 mean is
    re-checked in float64, where finite float32 values cannot overflow.
    """
    m32 = t.mean(0)
    if not torch.isfinite(m32).all():
        if not torch.isfinite(torch.mean(t, 0, dtype=torch.float64)).all():
            raise InputError(f"vectors.{label}: activations contain NaN or inf")
        return torch.mean(t, 0, dtype=torch.float64)  # only huge finite values get here
    residual = (t - m32).mean(0)
    return m32.double() + residual.double()


def method_seed(seed: int, method: str) -> int:
    """Seed of `method`'s own random stream, derived from the run seed."""
    # Independent, stable streams per method (gradient's init must not equal the random baseline).
    return int(np.random.SeedSequence([int(seed), zlib.crc32(method.encode())]).generate_state(1)[0])


@contextlib.contextmanager
def small_ops_threads(n: int = 1):
    """Run many small tensor ops (Newton, FastICA, Adam, batched eigh) on `n` intra-op threads.

    Why: on a busy 2-core machine, torch's thread pool spin-waits on every tiny op; we measured
    FastICA's 50x50 iterations 8x slower on 2 threads than on 1 under load. Big matmuls (the
    Gram matrices) stay on the default thread count.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Batched eigh of many n x n matrices: 0.12 s on 1 thread vs 3-5 s on 2 threads (measured,
    # 64 x 200 x 200, busy 2-core box): LAPACK per matrix gains nothing from the thread pool.
    with small_ops_threads():
        return torch.linalg.eigh(a)


def _orient(vec: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Flip each layer's vector so the pos class projects higher than neg on the training data."""
    sign = torch.where((vec.double() * diff).sum(-1) < 0, -1.0, 1.0).to(vec.dtype)
    return vec * sign[:, None]


# --------------------------------------------------------------------------------------------
# the span of the data: centred Gram matrices, batched over layers
# --------------------------------------------------------------------------------------------

class DataSpan:
    """X = [pos; neg] per layer, centred, seen through its Gram matrix.

    Everything the probe and ICA need lives in the n-dimensional row space of the centred data
    Xc [L, n, D]: Gc = Xc Xc^T [L, n, n] (float64) and its eigen-decomposition. Vectors in
    feature space are recovered as Xc^T a for coefficients a [L, n] (`back_map`).
    """

    def __init__(self, x: torch.Tensor, mean: torch.Tensor | None = None):
        self.x = x  # [n, L, D] float32, not copied
        n, L, D = x.shape
        self.n, self.L, self.D = n, L, D
        self.mean = torch.mean(x, 0, dtype=torch.float64) if mean is None else mean  # [L, D]
        # float32 Gram of centred rows (centring first keeps float32 accurate even with the large
        # mean components of real activations); eigen-decomposition in float64.
        gram = torch.empty(L, n, n, dtype=torch.float32)
        for sl in _layer_chunks(n, L, D):
            xc = self._centred(sl)
            torch.bmm(xc, xc.transpose(1, 2), out=gram[sl])
        gram = gram.double()
        self.gram = 0.5 * (gram + gram.transpose(1, 2))
        evals, evecs = _eigh(self.gram)  # ascending
        self.evals = evals.flip(-1).clamp_min(0.0)  # [L, n] descending
        self.evecs = evecs.flip(-1)  # [L, n, n], column j <-> evals[:, j]
        # float32 Gram: eigenvalues below ~1e-6 of the largest are rounding noise (and centring
        # always leaves one exact zero); treat them as outside the span.
        self.rank_mask = self.evals > self.evals[:, :1] * 1e-6  # [L, n]

    def _centred(self, sl: slice) -> torch.Tensor:
        """[l, n, D] float32 centred activations for a group of layers."""
        return self.x[:, sl].permute(1, 0, 2) - self.mean[sl, None, :].float()

    def back_map(self, coef: torch.Tensor) -> torch.Tensor:
        """Xc^T a per layer: [L, n] -> [L, D] float64 (sum(a) ~ 0 here, so no cancellation)."""
        raw = torch.einsum("nld,ln->ld", self.x, coef.float()).double()
        return raw - self.mean * coef.sum(-1, keepdim=True)


def _layer_chunks(n: int, L: int, D: int) -> list[slice]:
    # Groups of layers (not single layers) sized so a float32 copy stays under _CHUNK_BYTES.
    step = max(1, _CHUNK_BYTES // max(1, n * D * 4))
    return [slice(i, min(L, i + step)) for i in range(0, L, step)]


# --------------------------------------------------------------------------------------------
# probe: L2 logistic regression (scikit-learn's objective), exact Newton in the data span
# --------------------------------------------------------------------------------------------

def fit_probe(pos: torch.Tensor, neg: torch.Tensor, C: float = PROBE_C) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression per layer, pos = class 1: returns (coef [L, D], intercept [L]), float64.

    Minimises C * sum(logloss) + 0.5 * ||w||^2 with an unpenalised intercept, i.e. the objective
    of sklearn LogisticRegression(C=C, penalty="l2", fit_intercept=True).
    """
    pos, neg = _check_inputs(pos, neg)
    mean_pos, mean_neg = _class_mean(pos, "pos"), _class_mean(neg, "neg")
    pooled_mean = (len(pos) * mean_pos + len(neg) * mean_neg) / (len(pos) + len(neg))
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    return fit_probe_span(DataSpan(torch.cat([pos, neg], 0), mean=pooled_mean), y, C=C)


def fit_probe_span(span: DataSpan, y: torch.Tensor, C: float = PROBE_C) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe on a precomputed DataSpan (shares the Gram matrix with ICA)."""
    # With an unpenalised intercept, w does not change if X is centred (the shift goes into b),
    # and the optimal w lies in the row space of Xc (representer theorem). Writing
    # w = sum_j beta_j u_j over the unit right-singular vectors u_j = Xc^T v_j / sqrt(lam_j)
    # gives features Z = V sqrt(Lam) [L, n, n] and ||w|| = ||beta||: the same objective in n dims.
    if span.D < span.n:
        # Primal is smaller: features are the centred activations themselves.
        feats = torch.cat([span._centred(sl) for sl in _layer_chunks(span.n, span.L, span.D)], 0).double()
        beta, b = _newton_logreg(feats, y, C)
        return beta, b - (beta * span.mean).sum(-1)
    scale = torch.where(span.rank_mask, span.evals.sqrt(), torch.zeros_like(span.evals))
    feats = span.evecs * scale[:, None, :]
    beta, b = _newton_logreg(feats, y, C)
    inv = torch.where(span.rank_mask, 1.0 / scale.clamp_min(1e-300), torch.zeros_like(scale))
    coef = span.back_map(torch.einsum("lnj,lj->ln", span.evecs, beta * inv))
    intercept = b - (coef * span.mean).sum(-1)  # undo the centring
    return coef, intercept


def _newton_logreg(z: torch.Tensor, y: torch.Tensor, C: float, max_iter: int = 100, tol: float = 1e-10):
    """Batched damped Newton for min C*sum logloss(y, z@beta + b) + 0.5||beta||^2.

    z [L, n, p] float64, y [n] in {0, 1}. Returns beta [L, p], b [L]. Backtracking (Armijo) per
    layer, all candidate step sizes evaluated at once, so no layer has a Python loop of its own.
    """
    L, n, p = z.shape
    s = 2.0 * y - 1.0  # labels in {-1, +1}
    za = torch.cat([z, torch.ones(L, n, 1, dtype=z.dtype)], -1)  # bias column last
    reg = torch.ones(p + 1, dtype=z.dtype)
    reg[-1] = 0.0  # the intercept is not penalised
    theta = torch.zeros(L, p + 1, dtype=z.dtype)
    prior = y.mean().clamp(1e-6, 1 - 1e-6)
    theta[:, -1] = torch.log(prior / (1 - prior))
    steps = 0.5 ** torch.arange(30, dtype=z.dtype)  # candidate step sizes

    def objective(margins, th):  # margins [..., n], th [..., p+1]
        return C * torch.nn.functional.softplus(-s * margins).sum(-1) + 0.5 * (reg * th * th).sum(-1)

    with small_ops_threads():
        for _ in range(max_iter):
            m = torch.einsum("lnp,lp->ln", za, theta)
            prob = torch.sigmoid(m)
            grad = C * torch.einsum("lnp,ln->lp", za, prob - y) + reg * theta
            weight = (C * prob * (1 - prob)).clamp_min(1e-12)
            hess = (za * weight[..., None]).transpose(1, 2) @ za + torch.diag_embed(reg.expand(L, -1))
            hess[:, -1, -1] += 1e-10 * (1.0 + hess[:, -1, -1])  # solvable even if all weights vanish
            direction = -torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
            slope = (grad * direction).sum(-1)  # < 0: descent
            f0 = objective(m, theta)
            if (-slope <= tol * (1.0 + f0.abs())).all():
                break
            dm = torch.einsum("lnp,lp->ln", za, direction)
            cand_m = m[:, None, :] + steps[None, :, None] * dm[:, None, :]
            cand_t = theta[:, None, :] + steps[None, :, None] * direction[:, None, :]
            ok = objective(cand_m, cand_t) <= f0[:, None] + 1e-4 * steps[None, :] * slope[:, None]
            first = torch.where(ok.any(-1), ok.float().argmax(-1), torch.full((L,), -1))
            t = torch.where(first >= 0, steps[first.clamp_min(0)], torch.zeros(L, dtype=z.dtype))
            theta = theta + t[:, None] * direction
    return theta[:, :-1], theta[:, -1]


# --------------------------------------------------------------------------------------------
# gradient: maximise the class-mean gap along a unit direction (Adam), all layers in one tensor
# --------------------------------------------------------------------------------------------

def gradient_vectors(diff: torch.Tensor, seed: int, lr: float = GRADIENT_LR,
                     steps: int = GRADIENT_STEPS, penalty: float = GRADIENT_NORM_PENALTY) -> torch.Tensor:
    """Unit vectors [L, D] from Adam on -(mean(pos.v/|v|) - mean(neg.v/|v|)) + penalty*|v|.

    mean(pos.v) - mean(neg.v) == (mean(pos) - mean(neg)).v, so the loss only needs the class-mean
    difference `diff` [L, D]. Summing the per-layer losses keeps the layers independent (each
    gradient only touches its own row, and Adam is element-wise): the same as a loop per layer.
    """
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(diff.shape, generator=gen, dtype=torch.float32).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    diff = diff.float()
    with small_ops_threads():
        for _ in range(steps):
            opt.zero_grad()
            norm = v.norm(dim=-1)
            loss = (-(diff * v).sum(-1) / norm + penalty * norm).sum()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return v / v.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------------
# ICA: scikit-learn FastICA (parallel, logcosh, unit-variance whitening) in the data span
# --------------------------------------------------------------------------------------------

def ica_vectors(span: DataSpan, n_pos: int, seed: int = ICA_RANDOM_STATE, select: str = "first",
                n_components: int | None = None, max_iter: int = ICA_MAX_ITER, tol: float = ICA_TOL) -> torch.Tensor:
    """Mixing column per layer of FastICA(n_components=min(50, n-1), random_state=seed) on [pos; neg]
    (extract_vectors passes the original's seed, 42).

    Mirrors sklearn's FastICA step by step, but in the n-dimensional span: sklearn whitens with
    the SVD of Xc^T = U S V^T; the whitened data are sqrt(n) V^T (the D-dimensional U only enters
    through the final mixing matrix, mixing = Xc^T V W^T diag(S_std)). Same w_init
    (RandomState(seed).normal), same sign convention, same per-layer stopping rule.
    select="first": mixing column 0 (the original). "separation": the column whose projections
    best separate pos from neg (largest |Cohen's d| on the training data).
    """
    n = span.n
    nc = n_components or min(ICA_MAX_COMPONENTS, n - 1, span.D)
    v = span.evecs[:, :, :nc]  # [L, n, nc]
    # sklearn flips each U column so its first feature entry is positive; U[0, j] ~ Xc[:, 0] . v_j.
    first_feature = span.x[:, :, 0].T.double() - span.mean[:, None, 0]  # [L, n]
    sign = torch.sign(torch.einsum("ln,lnc->lc", first_feature, v))
    v = v * torch.where(sign == 0, 1.0, sign)[:, None, :]
    x1 = (v.transpose(1, 2) * n ** 0.5)  # whitened data [L, nc, n]

    w_init = np.random.RandomState(seed).normal(size=(nc, nc))
    # float64 on purpose: float32 iterations were 1.4x faster but, on data where FastICA has several
    # fixed points, land on a different one than sklearn (as sklearn's own float32 and float64 runs
    # do), so the first mixing column would no longer match the reference.
    with small_ops_threads():
        w = _sym_decorrelation(torch.as_tensor(w_init, dtype=torch.float64).expand(span.L, nc, nc))
        w = _fastica_parallel(w, x1, n, max_iter, tol)

    sources = w @ v.transpose(1, 2)  # [L, nc, n]: sklearn's S^T before unit-variance scaling
    s_std = sources.std(-1, unbiased=False)  # [L, nc]
    coeffs = v @ w.transpose(1, 2) * s_std[:, None, :]  # mixing = Xc^T @ coeffs, [L, n, nc]
    if select == "first":
        pick = torch.zeros(span.L, dtype=torch.long)
    else:
        proj = span.gram @ coeffs  # Xc @ mixing columns, [L, n, nc]
        norms = torch.einsum("lnc,lnm,lmc->lc", coeffs, span.gram, coeffs).clamp_min(1e-300).sqrt()
        proj = proj / norms[:, None, :]
        d = _cohens_d_torch(proj[:, :n_pos], proj[:, n_pos:], dim=1)  # [L, nc]
        pick = d.abs().argmax(-1)
    chosen = coeffs[torch.arange(span.L), :, pick]  # [L, n]
    return span.back_map(chosen)


def _fastica_parallel(w: torch.Tensor, x1: torch.Tensor, n: int, max_iter: int, tol: float) -> torch.Tensor:
    """sklearn's _ica_par (logcosh), batched over layers: w [L, c, c], whitened x1 [L, c, n]."""
    w = w.clone()
    active = torch.arange(w.shape[0])  # layers still iterating (sklearn stops each fit on its own)
    for _ in range(max_iter):
        wa, xa = w[active], x1[active]
        gwtx = torch.tanh(wa @ xa)  # logcosh contrast, alpha = 1
        g_wtx = (1 - gwtx ** 2).mean(-1)
        w1 = _sym_decorrelation(gwtx @ xa.transpose(1, 2) / n - g_wtx[..., None] * wa)
        lim = ((w1 * wa).sum(-1).abs() - 1).abs().amax(-1)
        w[active] = w1
        active = active[lim >= tol]
        if len(active) == 0:
            break
    return w


def _sym_decorrelation(w: torch.Tensor) -> torch.Tensor:
    """W <- (W W^T)^{-1/2} W, batched (as sklearn's helper)."""
    s, u = torch.linalg.eigh(w @ w.transpose(-1, -2))
    s = s.clamp_min(torch.finfo(w.dtype).tiny)
    return (u * s.rsqrt()[..., None, :]) @ u.transpose(-1, -2) @ w


def _cohens_d_torch(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    # The metrics' definition (vector_metrics): pooled sd = sqrt of the mean of the two variances.
    pooled = 0.5 * (a.var(dim) + b.var(dim))
    return (a.mean(dim) - b.mean(dim)) / pooled.sqrt().clamp_min(1e-300)


# --------------------------------------------------------------------------------------------
# pca_diff and random
# --------------------------------------------------------------------------------------------

def pca_diff_vectors(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """First principal component of the index-paired differences pos[i] - neg[i], unit [L, D].

    Pairs are truncated to min(N, M) and centred; computed from the k x k Gram matrix of the
    differences (exact top component; the original used torch.pca_lowrank's randomised estimate).
    """
    k = min(len(pos), len(neg))
    n, L, D = k, pos.shape[1], pos.shape[2]
    pcs = torch.empty(L, D, dtype=torch.float64)
    for sl in _layer_chunks(n, L, D):
        d = (pos[:k, sl] - neg[:k, sl]).permute(1, 0, 2)
        d = d - d.mean(1, keepdim=True)
        evals, evecs = _eigh((d @ d.transpose(1, 2)).double())
        top = evecs[:, :, -1]  # [l, k] eigenvector of the largest eigenvalue
        pc = torch.einsum("lkd,lk->ld", d, top.float()).double()
        norm = pc.norm(dim=-1, keepdim=True)
        if (evals[:, -1] <= 0).any() or (norm == 0).any():
            bad = int(sl.start + torch.nonzero((norm[:, 0] == 0) | (evals[:, -1] <= 0))[0, 0])
            raise InputError(f"vectors.pca_diff: paired differences have no variance at layer {bad}")
        pcs[sl] = pc / norm
    return pcs


def random_vectors(layers: int, dim: int, seed: int) -> torch.Tensor:
    """Random baseline: N(0, I) per layer, unit-normalised, from a seeded generator."""
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(layers, dim, generator=gen, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------------
# save / load (safetensors)
# --------------------------------------------------------------------------------------------

def save_vectors(path: str | Path, vectors: Mapping[str, torch.Tensor], metadata: Mapping | None = None) -> Path:
    """Write {method: [L, D]} to a safetensors file atomically; metadata values become strings
    (non-string values are JSON-encoded)."""
    from safetensors.torch import save_file

    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {name: torch.as_tensor(t).detach().float().contiguous() for name, t in vectors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_vectors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by save_vectors: ({method: [L, D]}, metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: vectors file not found (expected a safetensors file from save_vectors)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            vectors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    return vectors, meta
