#!/usr/bin/env python3
"""Independent NumPy oracle for the data-aware decoupling (ndlab_core::decouple::data_aware).

Usage: python3 tests/data_aware_check.py [PATH/TO/data_aware-example]
(default: target/release/examples/data_aware; build it with
`cargo build --release -p ndlab-core --example data_aware`). A missing binary is a failure.

For a real layer (assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy) it writes seeded synthetic
correlated activations (smooth random fields, channels mixed by a random matrix, ReLU, one dead
channel) to .npy, plus "decoupled network" activations (the same, disturbed), runs the example,
and recomputes everything with its own NumPy code:
  * patches through the geometry (np.pad + strided slicing), second moments S, Sigma_c, the
    Kronecker factors A = E[P P^T]/K^2, B = E[P^T P]/tr(A), the cross moment R = E[y p^T];
  * data-aware W_T for both orderings at T = 1, 2, 4: symmetric roots by np.linalg.eigh (ridge
    1e-3 * tr/d), truncated np.linalg.svd, a dead channel falling back to the data-free slice;
  * the refit's pointwise weights from the example's own depthwise filters by np.linalg.solve of
    (G + mu I) P = Y + mu P0, mu = ridge * mean(diag G); and the whole refit W_T from NumPy's own
    decomposition (sign-free);
  * expected error ratios and least-squares residuals from the statistics.
Two cases: the layer as it is (stride 1, pad 1), and its first 32 input channels as a 2-group
conv with stride 2, padding 2, dilation 2. Everything must agree to 1e-5 relative.
Prints "N passed, M failed" and exits 1 on any failure.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

TOL = 1e-5
ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYER = ROOT / "assets" / "layers" / "craft_vgg16bn_conv1_2_64x64x3x3.npy"
TS = [1, 2, 4]
RIDGE, REFIT_RIDGE, FLOOR = 1e-3, 1e-6, 1e-12
IMAGES = 3


# ----------------------------------------------------------------- data

def smooth(rng, h, w, s):
    r = int(np.ceil(3 * s))
    noise = rng.standard_normal((h + 2 * r, w + 2 * r))
    k = np.exp(-((np.arange(2 * r + 1) - r) ** 2) / (2 * s * s))
    rows = np.stack([np.convolve(row, k, mode="valid") for row in noise])
    return np.stack([np.convolve(col, k, mode="valid") for col in rows.T]).T


def activations(rng, c, h, w, dead):
    z = np.stack([smooth(rng, h, w, 1.0 + (j % 3) * 0.5) for j in range(c)])
    mix = rng.standard_normal((c, c)) / np.sqrt(c) + 0.5 * np.eye(c)
    x = np.maximum(np.einsum("ij,jhw->ihw", mix, z) + 0.3, 0.0)
    x[dead] = 0.0
    return x.astype(np.float32)


# ----------------------------------------------------------------- statistics

def patches(x, kh, kw, s, p, d):
    """(C, K^2, npos) patches, tap index ky*kw + kx, zero padding."""
    c, h, w = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
    ho = (h + 2 * p - d * (kh - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (kw - 1) - 1) // s + 1
    taps = [xp[:, ky * d: ky * d + s * (ho - 1) + 1: s, kx * d: kx * d + s * (wo - 1) + 1: s].reshape(c, -1)
            for ky in range(kh) for kx in range(kw)]
    return np.stack(taps, axis=1), ho, wo


def statistics(w, bias, xs, xds, geo):
    n, c, kh, kw = w.shape
    k2, g = kh * kw, geo["groups"]
    nper, dim = n // g, c * k2
    S = np.zeros((g, dim, dim))       # from the original activations (decoupling, expected error)
    Sd = np.zeros((g, dim, dim))      # from the decoupled network's (refit)
    R = np.zeros((g, nper, dim))
    yy = np.zeros(n)
    count = 0
    for x, xd in zip(xs, xds):
        P, ho, wo = patches(x, kh, kw, geo["stride"], geo["pad"], geo["dil"])
        Pd, _, _ = patches(xd, kh, kw, geo["stride"], geo["pad"], geo["dil"])
        count += ho * wo
        for gi in range(g):
            X = P[gi * c:(gi + 1) * c].reshape(dim, -1)
            Xd = Pd[gi * c:(gi + 1) * c].reshape(dim, -1)
            y = w[gi * nper:(gi + 1) * nper].reshape(nper, dim).astype(np.float64) @ X  # bias-free target
            S[gi] += X @ X.T
            Sd[gi] += Xd @ Xd.T
            R[gi] += y @ Xd.T
            yy[gi * nper:(gi + 1) * nper] += (y ** 2).sum(axis=1)
    return S / count, Sd / count, R / count, yy / count


def roots(m, ridge):
    """(M + ridge*tr/d I)^(+-1/2) by eigh, or None for a zero matrix."""
    d = m.shape[0]
    tr = np.trace(m)
    if tr <= 0:
        return None
    lam, q = np.linalg.eigh((m + m.T) / 2 + ridge * tr / d * np.eye(d))
    lam = np.maximum(lam, FLOOR * lam.max())
    return (q * np.sqrt(lam)) @ q.T, (q / np.sqrt(lam)) @ q.T


def truncated(m, t):
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    return (u[:, :t] * s[:t]) @ vt[:t]


# ----------------------------------------------------------------- the method, in NumPy

def aware_kernel(w, S, order, t, groups):
    n, c, kh, kw = w.shape
    k2, nper = kh * kw, n // groups
    w64 = w.astype(np.float64).reshape(n, c, k2)
    out = np.zeros_like(w64)
    for g in range(groups):
        blocks = S[g].reshape(c, k2, c, k2)
        if order == "dwpw":
            for cl in range(c):
                m = w64[g * nper:(g + 1) * nper, cl]
                r = roots(blocks[cl, :, cl, :], RIDGE)
                out[g * nper:(g + 1) * nper, cl] = truncated(m, t) if r is None else truncated(m @ r[0], t) @ r[1]
        else:
            A = np.einsum("aibi->ab", blocks) / k2
            B = np.einsum("aiaj->ij", blocks) / max(np.trace(A), 1e-300)
            ra, rb = roots(A, RIDGE), roots(B, RIDGE)
            for nn in range(g * nper, (g + 1) * nper):
                m = w64[nn]
                out[nn] = truncated(m, t) if ra is None or rb is None else ra[1] @ truncated(ra[0] @ m @ rb[0], t) @ rb[1]
    return out.reshape(w.shape)


def factors_from_kernel_free(w, S, order, t, groups):
    """NumPy's own data-aware depthwise filters and pointwise weights (slices x t x K^2, x rows)."""
    n, c, kh, kw = w.shape
    k2, nper = kh * kw, n // groups
    w64 = w.astype(np.float64).reshape(n, c, k2)
    dws, pws = [], []
    for g in range(groups):
        blocks = S[g].reshape(c, k2, c, k2)
        if order == "dwpw":
            for cl in range(c):
                m = w64[g * nper:(g + 1) * nper, cl]
                r = roots(blocks[cl, :, cl, :], RIDGE)
                if r is None:
                    u, s, vt = np.linalg.svd(m, full_matrices=False)
                    dws.append(vt[:t]); pws.append((u[:, :t] * s[:t]).T)
                else:
                    u, s, vt = np.linalg.svd(m @ r[0], full_matrices=False)
                    dws.append(vt[:t] @ r[1]); pws.append((u[:, :t] * s[:t]).T)
        else:
            A = np.einsum("aibi->ab", blocks) / k2
            B = np.einsum("aiaj->ij", blocks) / np.trace(A)
            ra, rb = roots(A, RIDGE), roots(B, RIDGE)
            for nn in range(g * nper, (g + 1) * nper):
                u, s, vt = np.linalg.svd(ra[0] @ w64[nn] @ rb[0], full_matrices=False)
                dws.append(vt[:t] @ rb[1]); pws.append((ra[1] @ (u[:, :t] * s[:t])).T)
    return np.array(dws), np.array(pws)


def refit_pw(dw, pw0, Sd, R, order, shape, groups):
    """Least-squares pointwise weights for fixed dw (slices x t x K^2), ridge centred on pw0."""
    n, c, kh, kw = shape
    k2, nper, t = kh * kw, n // groups, dw.shape[1]
    out = pw0.copy()

    def solve(G, Y, P0):
        mu = REFIT_RIDGE * np.mean(np.diag(G))
        return np.linalg.solve(G + mu * np.eye(len(G)), (Y + mu * P0).T).T

    for g in range(groups):
        if order == "dwpw":
            D = np.zeros((c * k2, c * t))
            for cl in range(c):
                D[cl * k2:(cl + 1) * k2, cl * t:(cl + 1) * t] = dw[g * c + cl].T
            G, Y = D.T @ Sd[g] @ D, R[g] @ D
            P0 = np.concatenate([pw0[g * c + cl].T for cl in range(c)], axis=1)  # nper x (c*t)
            P = solve(G, Y, P0)
            for cl in range(c):
                out[g * c + cl] = P[:, cl * t:(cl + 1) * t].T
        else:
            for nl in range(nper):
                nn = g * nper + nl
                D = np.kron(np.eye(c), dw[nn].T)  # (c*k2) x (c*t), column cl*t + tt
                G, Y = D.T @ Sd[g] @ D, R[g][nl] @ D
                P0 = pw0[nn].T.reshape(-1)  # index cl*t + tt
                out[nn] = solve(G, Y[None, :], P0[None, :]).reshape(c, t).T
    return out


def kernel_from(dw, pw, order, shape, groups):
    n, c, kh, kw = shape
    k2, nper = kh * kw, n // groups
    w = np.zeros((n, c, k2))
    for g in range(groups):
        if order == "dwpw":
            for cl in range(c):
                w[g * nper:(g + 1) * nper, cl] = pw[g * c + cl].T @ dw[g * c + cl]
        else:
            for nn in range(g * nper, (g + 1) * nper):
                w[nn] = pw[nn].T @ dw[nn]
    return w.reshape(shape)


def quad(S, delta, groups):
    n = delta.shape[0]
    nper = n // groups
    flat = delta.reshape(n, -1)
    return sum(np.einsum("ni,ij,nj->", flat[g * nper:(g + 1) * nper], S[g], flat[g * nper:(g + 1) * nper])
               for g in range(groups))


def residual(Sd, R, yy, wh, groups):
    n = wh.shape[0]
    nper, flat = n // groups, wh.reshape(n, -1).astype(np.float64)
    return yy.sum() + sum(-2 * np.sum(flat[g * nper:(g + 1) * nper] * R[g])
                          + np.einsum("ni,ij,nj->", flat[g * nper:(g + 1) * nper], Sd[g], flat[g * nper:(g + 1) * nper])
                          for g in range(groups))


def free_kernel(w, order, t, groups):
    n, c, kh, kw = w.shape
    nper = n // groups
    w64 = w.astype(np.float64)
    out = np.zeros_like(w64)
    if order == "dwpw":
        for g in range(groups):
            for cl in range(c):
                m = w64[g * nper:(g + 1) * nper, cl].reshape(nper, -1)
                out[g * nper:(g + 1) * nper, cl] = truncated(m, t).reshape(nper, kh, kw)
    else:
        for nn in range(n):
            out[nn] = truncated(w64[nn].reshape(c, -1), t).reshape(c, kh, kw)
    return out


# ----------------------------------------------------------------- comparison

def rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return np.inf
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def run_case(binary, name, w, geo, seed):
    rng = np.random.default_rng(seed)
    n, c, kh, kw = w.shape
    ctot = c * geo["groups"]
    bias = rng.standard_normal(n).astype(np.float32) * 0.1
    xs = [activations(rng, ctot, 20, 18, dead=5) for _ in range(IMAGES)]
    xds = [(x * (1 + 0.2 * rng.standard_normal(x.shape)) + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
           for x in xs]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        np.save(d / "kernel.npy", w)
        np.save(d / "bias.npy", bias)
        for i, (x, xd) in enumerate(zip(xs, xds)):
            np.save(d / f"x{i}.npy", x)
            np.save(d / f"xd{i}.npy", xd)
        (d / "case.json").write_text(json.dumps(dict(geo, ts=TS, ridge=RIDGE, refit_ridge=REFIT_RIDGE, images=IMAGES)))
        out = subprocess.run([str(binary), str(d)], capture_output=True, text=True)
        if out.returncode != 0:
            return [(f"{name}: example exited {out.returncode}: {out.stderr.strip()}", False)]
        S, Sd, R, yy = statistics(w, bias, xs, xds, geo)
        g = geo["groups"]
        for order in ("dwpw", "pwdw"):
            exp_rust = np.load(d / f"expected_{order}.npy")
            ref = quad(S, w.astype(np.float64), g)
            for i, t in enumerate(TS):
                label = f"{name} {order} T={t}"
                want = aware_kernel(w, S, order, t, g)
                rw = np.load(d / f"aware_{order}_{t}.npy")
                results.append((f"{label} data-aware W_T: {rel(rw, want):.1e}", rel(rw, want) <= TOL))
                dw, pw0 = np.load(d / f"dw_{order}_{t}.npy"), np.load(d / f"pw0_{order}_{t}.npy")
                fit = refit_pw(dw, pw0, Sd, R, order, w.shape, g)
                rfit = np.load(d / f"pwfit_{order}_{t}.npy")
                results.append((f"{label} refit pw (Rust's dw): {rel(rfit, fit):.1e}", rel(rfit, fit) <= TOL))
                own_dw, own_pw = factors_from_kernel_free(w, S, order, t, g)
                own_fit = kernel_from(own_dw, refit_pw(own_dw, own_pw, Sd, R, order, w.shape, g), order, w.shape, g)
                rk = np.load(d / f"refit_{order}_{t}.npy")
                results.append((f"{label} refit W_T (NumPy's own factors): {rel(rk, own_fit):.1e}", rel(rk, own_fit) <= TOL))
                e_free = quad(S, w - free_kernel(w, order, t, g), g) / ref
                e_aware = quad(S, w - rw.astype(np.float64), g) / ref
                res_b = residual(Sd, R, yy, rw, g)
                res_a = residual(Sd, R, yy, rk, g)
                mine = np.array([e_free, e_aware, res_b, res_a])
                ok = rel(exp_rust[i], mine) <= TOL
                results.append((f"{label} expected errors/residuals {np.round(mine, 5)}: {rel(exp_rust[i], mine):.1e}", ok))
                results.append((f"{label} refit residual {res_a:.4g} <= data-aware {res_b:.4g}", res_a <= res_b * (1 + 1e-9)))
    return results


def main():
    binary = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "release" / "examples" / "data_aware"
    if not binary.is_file():
        print(f"FAIL: {binary} is missing: build it with `cargo build --release -p ndlab-core --example data_aware`")
        sys.exit(1)
    w = np.load(LAYER).astype(np.float32)
    results = run_case(binary, "conv1_2", w, dict(stride=1, pad=1, dil=1, groups=1), 1)
    results += run_case(binary, "conv1_2[:, :32] g2 s2 p2 d2", np.ascontiguousarray(w[:, :32]),
                        dict(stride=2, pad=2, dil=2, groups=2), 2)
    failed = [m for m, ok in results if not ok]
    for m, ok in results:
        print(("ok   " if ok else "FAIL ") + m)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
