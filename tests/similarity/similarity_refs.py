"""Straightforward float64 NumPy references for the similarity tests and benchmark.

Written from the published definitions: Kornblith et al. 2019 (CKA; Gram centring by mean
subtraction, the U-statistic, RBF with 0.5 x median bandwidth), google/svcca ``cca_core``
(np.cov whitening with pinv and an eigh square root) and Morcos et al. 2018 (PWCCA).
"""

from __future__ import annotations

import numpy as np


def gram_linear(x):
    return x @ x.T


def gram_rbf(x, threshold=0.5):
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq = -2 * dot + sq_norms[:, None] + sq_norms[None, :]
    med = np.median(sq)
    return np.exp(-sq / (2 * threshold**2 * med))


def center_gram(gram, unbiased=False):
    gram = np.array(gram, dtype=np.float64, copy=True)
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def cka_gram(k, l, debiased=False):
    k = center_gram(k, debiased)
    l = center_gram(l, debiased)
    return float(k.ravel() @ l.ravel() / (np.linalg.norm(k) * np.linalg.norm(l)))


def linear_cka(x, y, debiased=False):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return cka_gram(gram_linear(x), gram_linear(y), debiased)


def hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l @ h) / (n - 1) ** 2)


def hsic_unbiased(k, l):
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(term / (n * (n - 3)))


def svcca_cca(acts1, acts2, epsilon=0.0):
    """google/svcca ``get_cca_similarity`` coefficients; acts are (neurons, datapoints)."""
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx = cov[:numx, :numx]
    sxy = cov[:numx, numx:]
    syy = cov[numx:, numx:]
    xmax = np.max(np.abs(sxx))
    ymax = np.max(np.abs(syy))
    sxx = sxx / xmax
    syy = syy / ymax
    sxy = sxy / np.sqrt(xmax * ymax)
    xi = np.abs(np.diag(sxx)) >= epsilon
    yi = np.abs(np.diag(syy)) >= epsilon
    sxx = sxx[xi][:, xi] + epsilon * np.eye(xi.sum())
    syy = syy[yi][:, yi] + epsilon * np.eye(yi.sum())
    sxy = sxy[xi][:, yi]

    def invsqrt(a):
        w, v = np.linalg.eigh(np.linalg.pinv(a))
        return v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T

    s = np.linalg.svd(invsqrt(sxx) @ sxy @ invsqrt(syy), compute_uv=False)
    return np.abs(s)


def cca_rho(x, y):
    """Singular values of Q_x^T Q_y for thin orthonormal bases of the centred data."""
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    qx = np.linalg.svd(xc, full_matrices=False)[0][:, : np.linalg.matrix_rank(xc)]
    qy = np.linalg.svd(yc, full_matrices=False)[0][:, : np.linalg.matrix_rank(yc)]
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def ridge_cca_rho(x, y, epsilon):
    """Regularised CCA: svd((Sxx + r_x I)^-1/2 Sxy (Syy + r_y I)^-1/2), r = eps * max var."""
    c = np.cov(x.T, y.T)
    dx = x.shape[1]
    sxx, sxy, syy = c[:dx, :dx], c[:dx, dx:], c[dx:, dx:]

    def isq(a, r):
        w, v = np.linalg.eigh(a + r * np.eye(len(a)))
        return v @ np.diag(1 / np.sqrt(w)) @ v.T

    m = isq(sxx, epsilon * np.max(np.diag(sxx))) @ sxy @ isq(syy, epsilon * np.max(np.diag(syy)))
    return np.linalg.svd(m, compute_uv=False)


def svcca_mean(x, y, threshold=0.99):
    reduced = []
    kept = []
    for a in (x, y):
        ac = a - a.mean(0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.argmax(frac >= threshold)) + 1
        reduced.append(u[:, :k] * s[:k])
        kept.append(k)
    rho = svcca_cca(reduced[0].T, reduced[1].T)
    return float(rho.mean()), kept


def pwcca_morcos(x, y, side="x"):
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    qx, _ = np.linalg.qr(xc)
    qy, _ = np.linalg.qr(yc)
    u, s, vt = np.linalg.svd(qx.T @ qy, full_matrices=False)
    if side == "x":
        h, a = qx @ u, xc
    else:
        h, a = qy @ vt.T, yc
    k = len(s)
    h = h[:, :k]
    alpha = np.abs(h.T @ a).sum(1)
    alpha /= alpha.sum()
    return float(alpha @ s)


def pwcca_svcca_repo(acts1, acts2):
    """google/svcca ``compute_pwcca(acts1, acts2, epsilon=0)``; acts are (neurons, datapoints).

    When acts2 has fewer neurons google/svcca's branch indexes acts1 and raises; this takes the
    intended branch (its own right singular vectors and acts2)."""
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syy = cov[:numx, :numx], cov[:numx, numx:], cov[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)

    def invsqrt(a):
        w, v = np.linalg.eigh(np.linalg.pinv(a))
        return v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T

    u, s, v = np.linalg.svd(invsqrt(sxx) @ sxy @ invsqrt(syy))
    s = np.abs(s)
    coef, acts = (u.T, acts1) if numx <= acts2.shape[0] else (v, acts2)
    means = np.mean(acts, axis=1, keepdims=True)
    dirns = coef @ (acts - means) + means
    p, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(p.T @ acts.T), axis=1)
    weights = weights / np.sum(weights)
    return float(np.sum(weights * s))
