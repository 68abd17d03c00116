//! Network decoupling: per-slice SVDs of a conv kernel, truncation to T terms, factors in branch
//! and merged form, energy/error curves and threshold rules (METHOD.md).
//!
//! Every slice is decomposed in f64: tall slices by the fast route of `decouple/fast.rs` (Gram +
//! Jacobi with SIMD tiles, the same run-time checks as [`crate::svd`]), any slice failing a
//! check and every wide slice by [`crate::svd::svd_with`] (Gram + Jacobi, checked, one-sided
//! Jacobi as the fallback); the factors are kept in f64 and rounded to f32 only when a
//! kernel, merged form or branch form is produced. Conventions:
//! * `Slice.pw` row k = σ_k u_k, `Slice.dw` row k = v_k, so `M = Σ_k pw_k dw_kᵀ` and the T-term
//!   error is exactly the σ tail (the SVD's vectors on one side are orthonormal by construction).
//! * A numerically null term (σ_k below `rank_tol·σ_max`) has σ_k = 0 and zero vectors; an all-zero
//!   slice has all-zero factors and is left out of both threshold rules.
//! * An all-zero kernel: error 0 and energy kept 1 at every T, and `threshold_t` returns 1.
//! * 1×1 kernels (K² = 1) are already separable: `full_rank` = 1 and T = 1 is exact.

use crate::error::{Error, Result};
use crate::layer::{Kernel, Order};
use crate::svd;
use serde::{Deserialize, Serialize};

pub mod data_aware;
mod fast;
mod lanes;
mod spectra;
pub mod terms;

pub use spectra::{SliceSpectrum, Spectra};

/// The SVD of one slice of the kernel.
/// DW→PW: slice = input channel c (global index), matrix M_c is (N/groups) × K².
/// PW→DW: slice = output channel n, matrix M'_n is c × K² (c = input channels per group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Singular values, descending, ≥ 0, length `full_rank`.
    pub sigma: Vec<f64>,
    /// Depthwise filters: `full_rank` rows of K² values, row k = v_k (unit norm, or all zero when σ_k = 0).
    pub dw: Vec<f64>,
    /// Pointwise weights: `full_rank` rows of `m` values, row k = σ_k u_k (m = rows of the slice matrix).
    pub pw: Vec<f64>,
    /// ‖M‖²_F of the slice (equals Σ σ² up to rounding; checked at run time).
    pub energy: f64,
}

/// All slices of a kernel decoupled in one ordering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    pub order: Order,
    /// Output channels, input channels per group, kernel height and width, groups (of the original kernel).
    pub n: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    /// Terms needed for an exact decoupling: min(N/groups, K²) for DW→PW, min(c, K²) for PW→DW.
    pub full_rank: usize,
    /// DW→PW: c·groups slices (one per input channel); PW→DW: n slices (one per output channel).
    pub slices: Vec<Slice>,
}

/// Rule that turns an energy threshold τ into T (METHOD.md, "Choosing T").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdRule {
    /// Official code: mean over non-zero slices of e_c(t) ≥ τ.
    Mean,
    /// TRP code: T = max over slices of min{t : e_c(t) ≥ τ}.
    Max,
}

/// Truncated factors in merged form, ready to run (f32).
/// DW→PW: `dw` has (C_total·T) rows of K² (intermediate channel c·T + t), `pw` is N × (C/groups... per group) —
/// see [`Merged::pw_cols`]; PW→DW: `pw` has (N·T) rows (row n·T + t) over the c inputs of n's group,
/// `dw` has (N·T) rows of K², and output n sums rows n·T..n·T+T.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub order: Order,
    pub t: usize,
    pub n: usize,
    /// Input channels of the whole layer.
    pub c_total: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    pub dw: Vec<f32>,
    pub pw: Vec<f32>,
}

impl Merged {
    /// Columns of one row of `pw`: DW→PW: (c_total/groups)·T; PW→DW: c_total/groups.
    pub fn pw_cols(&self) -> usize {
        match self.order {
            Order::DwPw => self.c_total / self.groups * self.t,
            Order::PwDw => self.c_total / self.groups,
        }
    }
}

/// One branch of the branch form (term t): a depthwise op and a pointwise op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// DW→PW: C_total filters (one per input channel); PW→DW: N filters (one per output channel). K² each.
    pub dw: Vec<f32>,
    /// DW→PW: N × (c per group) matrix; PW→DW: N × (c per group) matrix.
    pub pw: Vec<f32>,
}

impl Decomposition {
    /// Decouples every slice of `kernel` in `order`. Grouped kernels (groups > 1) are decoupled
    /// group by group. Fails on non-finite weights or a failed numerical self-check.
    ///
    /// Tall slices (rows ≥ K²) take the fast route (`decouple/fast.rs`: Gram matrix and `M V`
    /// with SIMD tiles straight from the f32 kernel, Jacobi on two slices at once) with
    /// [`svd::svd`]'s run-time checks; a slice failing one, and every wide slice, goes through
    /// [`svd::svd_with`] (checked Gram route, one-sided Jacobi fallback), where a slice whose Σσ²
    /// still differs from ‖M‖²_F by more than 1e-9 relative is an [`Error::Numeric`].
    /// 1×1 kernels (K² = 1) decouple trivially with `full_rank` = 1.
    pub fn new(kernel: &Kernel, groups: usize, order: Order) -> Result<Self> {
        Self::new_counting(kernel, groups, order).map(|(d, _)| d)
    }

    /// [`Decomposition::new`], also saying which route each slice took.
    ///
    /// Tall slices (rows ≥ K², every real layer) take the fast route straight from the f32
    /// kernel (Gram matrix in f64 with SIMD tiles, Jacobi, `M V`; see `decouple/fast.rs`) with the
    /// same run-time checks as [`svd::svd`]; a slice that fails one, and every wide slice, is
    /// recomputed by [`svd::svd_with`] (checked Gram route, then one-sided Jacobi).
    pub fn new_counting(kernel: &Kernel, groups: usize, order: Order) -> Result<(Self, Routes)> {
        let (count, rows, cols) = slice_shape(kernel, groups, order)?;
        let mut routes = Routes::default();
        // The fast route notices a non-finite value from its slice's Gram trace (and hands the
        // slice to the fallback, which reports it): no separate pass over the kernel.
        let slices = if rows >= cols {
            fast_slices(kernel, groups, order, &mut routes)?
        } else {
            nonfinite(kernel)?;
            routes.checked = count;
            checked_slices(kernel, groups, order)?
        };
        let d = Decomposition {
            order,
            n: kernel.n,
            c: kernel.c,
            kh: kernel.kh,
            kw: kernel.kw,
            groups,
            full_rank: rows.min(cols),
            slices,
        };
        Ok((d, routes))
    }

    /// Singular values and energies only (what the page draws and the threshold rules read).
    pub fn spectra(&self) -> Spectra {
        Spectra {
            order: self.order,
            n: self.n,
            c: self.c,
            kh: self.kh,
            kw: self.kw,
            groups: self.groups,
            full_rank: self.full_rank,
            slices: self
                .slices
                .iter()
                .map(|s| SliceSpectrum { sigma: s.sigma.clone(), energy: s.energy })
                .collect(),
        }
    }

    /// Energy kept for T = 1..=full_rank (index T−1); see [`Spectra::energy_kept`].
    pub fn energy_kept(&self) -> Vec<f64> {
        spectra::energy_kept(self.full_rank, self.sigmas())
    }

    /// Relative weight error for T = 1..=full_rank (index T−1); see [`Spectra::rel_weight_error`].
    pub fn rel_weight_error(&self) -> Vec<f64> {
        spectra::rel_weight_error(self.full_rank, self.sigmas())
    }

    /// Per-slice energy fractions; see [`Spectra::slice_energy`].
    pub fn slice_energy(&self, slice: usize) -> Vec<f64> {
        self.slices.get(slice).map_or_else(Vec::new, |s| spectra::energy_fractions(&s.sigma))
    }

    /// Smallest T whose energy reaches τ under `rule`; see [`Spectra::threshold_t`].
    pub fn threshold_t(&self, tau: f64, rule: ThresholdRule) -> Result<usize> {
        spectra::threshold_t(self.full_rank, self.sigmas(), tau, rule)
    }

    /// 1 ≤ t ≤ full_rank, or an error naming the range.
    pub fn check_t(&self, t: usize) -> Result<()> {
        spectra::check_t(t, self.full_rank, self.order)
    }

    fn sigmas(&self) -> impl Iterator<Item = &[f64]> + Clone {
        self.slices.iter().map(|s| s.sigma.as_slice())
    }

    /// The k-th rank-one term of every slice alone (k = 0 is the strongest), as a one-term
    /// decomposition: `term(k).reconstruct(1)` is W_{k+1} − W_k, and the terms of k = 0..r sum
    /// to the kernel. Lets a host compute conv(x, W − W_T) = Σ_{k ≥ T} conv(x, term k) for every
    /// T with one single-term conv per k (METHOD.md: the decoupled layer is linear in its terms).
    pub fn term(&self, k: usize) -> Result<Decomposition> {
        if k >= self.full_rank {
            return Err(Error::Param(format!("term {k} out of range (0..{})", self.full_rank)));
        }
        let (k2, rows) = (self.kh * self.kw, self.slice_rows());
        let slices = self
            .slices
            .iter()
            .map(|s| {
                let part = |v: &[f64], len: usize| v.get(k * len..(k + 1) * len).map(<[f64]>::to_vec);
                let (dw, pw) = (part(&s.dw, k2), part(&s.pw, rows));
                let sigma = s.sigma.get(k).copied();
                match (dw, pw, sigma) {
                    (Some(dw), Some(pw), Some(sigma)) => {
                        Ok(Slice { sigma: vec![sigma], dw, pw, energy: sigma * sigma })
                    }
                    _ => Err(Error::Param("the decomposition holds no factors (σ only)".into())),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decomposition { full_rank: 1, slices, ..self.clone_header() })
    }

    /// This decomposition's shape fields with no slices.
    fn clone_header(&self) -> Decomposition {
        Decomposition {
            order: self.order,
            n: self.n,
            c: self.c,
            kh: self.kh,
            kw: self.kw,
            groups: self.groups,
            full_rank: self.full_rank,
            slices: Vec::new(),
        }
    }

    /// The reconstructed kernel W_T (same shape as the original), 1 ≤ T ≤ full_rank.
    /// Accumulated in f64, rounded once to f32.
    pub fn reconstruct(&self, t: usize) -> Result<Kernel> {
        self.check_t(t)?;
        let k2 = self.kh * self.kw;
        let rows = self.slice_rows();
        let mut data = vec![0.0f32; self.n * self.c * k2];
        let mut acc = vec![0.0f64; k2];
        for (s, slice) in self.slices.iter().enumerate() {
            for row in 0..rows {
                acc.fill(0.0);
                for k in 0..t {
                    let f = slice.pw[k * rows + row];
                    for (a, &d) in acc.iter_mut().zip(&slice.dw[k * k2..(k + 1) * k2]) {
                        *a += f * d;
                    }
                }
                let off = self.row_offset(s, row);
                for (o, &a) in data[off..off + k2].iter_mut().zip(&acc) {
                    *o = a as f32;
                }
            }
        }
        Kernel::new(self.n, self.c, self.kh, self.kw, data)
    }

    /// Truncated factors in merged form (layout documented on [`Merged`]).
    pub fn merged(&self, t: usize) -> Result<Merged> {
        self.check_t(t)?;
        let k2 = self.kh * self.kw;
        let (dw, pw) = match self.order {
            Order::DwPw => {
                let mut dw = Vec::with_capacity(self.slices.len() * t * k2);
                for slice in &self.slices {
                    dw.extend(slice.dw[..t * k2].iter().map(|&x| x as f32));
                }
                let nper = self.n / self.groups;
                let cols = self.c * t;
                let mut pw = vec![0.0f32; self.n * cols];
                for (n, row) in pw.chunks_exact_mut(cols).enumerate() {
                    let (g, nl) = (n / nper, n % nper);
                    for cl in 0..self.c {
                        let slice = &self.slices[g * self.c + cl];
                        for k in 0..t {
                            row[cl * t + k] = slice.pw[k * nper + nl] as f32;
                        }
                    }
                }
                (dw, pw)
            }
            Order::PwDw => {
                let mut dw = Vec::with_capacity(self.n * t * k2);
                let mut pw = Vec::with_capacity(self.n * t * self.c);
                for slice in &self.slices {
                    dw.extend(slice.dw[..t * k2].iter().map(|&x| x as f32));
                    pw.extend(slice.pw[..t * self.c].iter().map(|&x| x as f32));
                }
                (dw, pw)
            }
        };
        Ok(Merged {
            order: self.order,
            t,
            n: self.n,
            c_total: self.c * self.groups,
            kh: self.kh,
            kw: self.kw,
            groups: self.groups,
            dw,
            pw,
        })
    }

    /// Truncated factors in branch form: T branches (layout documented on [`Branch`]).
    pub fn branches(&self, t: usize) -> Result<Vec<Branch>> {
        self.check_t(t)?;
        Ok((0..t).map(|k| self.branch(k)).collect())
    }

    /// Branch k: the k-th term of every slice.
    fn branch(&self, k: usize) -> Branch {
        let k2 = self.kh * self.kw;
        let mut dw = Vec::with_capacity(self.slices.len() * k2);
        for slice in &self.slices {
            dw.extend(slice.dw[k * k2..(k + 1) * k2].iter().map(|&x| x as f32));
        }
        let mut pw = vec![0.0f32; self.n * self.c];
        match self.order {
            Order::DwPw => {
                let nper = self.n / self.groups;
                for (n, row) in pw.chunks_exact_mut(self.c).enumerate() {
                    let (g, nl) = (n / nper, n % nper);
                    for (cl, o) in row.iter_mut().enumerate() {
                        *o = self.slices[g * self.c + cl].pw[k * nper + nl] as f32;
                    }
                }
            }
            Order::PwDw => {
                for (row, slice) in pw.chunks_exact_mut(self.c).zip(&self.slices) {
                    for (o, &x) in row.iter_mut().zip(&slice.pw[k * self.c..(k + 1) * self.c]) {
                        *o = x as f32;
                    }
                }
            }
        }
        Branch { dw, pw }
    }

    /// Rows of one slice matrix: N/groups for DW→PW, c for PW→DW.
    fn slice_rows(&self) -> usize {
        match self.order {
            Order::DwPw => self.n / self.groups,
            Order::PwDw => self.c,
        }
    }

    /// Start, in the OIHW kernel data, of the K² filter that is row `row` of slice `s`.
    fn row_offset(&self, s: usize, row: usize) -> usize {
        let k2 = self.kh * self.kw;
        match self.order {
            Order::DwPw => {
                let nper = self.n / self.groups;
                let (g, cl) = (s / self.c, s % self.c);
                ((g * nper + row) * self.c + cl) * k2
            }
            Order::PwDw => (s * self.c + row) * k2,
        }
    }
}

/// Number of slices, and rows and columns of each slice matrix, for `kernel` split into `groups`
/// decoupled in `order`: DW→PW: (c·groups, N/groups, K²); PW→DW: (N, c, K²).
pub fn slice_shape(kernel: &Kernel, groups: usize, order: Order) -> Result<(usize, usize, usize)> {
    let (n, c, k2) = (kernel.n, kernel.c, kernel.kh * kernel.kw);
    if n == 0 || c == 0 || k2 == 0 {
        return Err(Error::Shape(format!("kernel {n}×{c}×{}×{} has a zero dimension", kernel.kh, kernel.kw)));
    }
    let len = n.checked_mul(c).and_then(|x| x.checked_mul(k2));
    if len != Some(kernel.data.len()) {
        return Err(Error::Shape(format!(
            "kernel {n}×{c}×{}×{} needs {} values, got {}",
            kernel.kh,
            kernel.kw,
            len.map_or("too many".to_string(), |l| l.to_string()),
            kernel.data.len()
        )));
    }
    if groups == 0 || n % groups != 0 {
        return Err(Error::Shape(format!("{n} output channels cannot be split into {groups} groups")));
    }
    Ok(match order {
        Order::DwPw => (c * groups, n / groups, k2),
        Order::PwDw => (n, c, k2),
    })
}

/// Slice `s` of `kernel` as a row-major matrix (rows × K², shapes as in [`slice_shape`]):
/// DW→PW: row n_local = W[g·N/groups + n_local, s mod c] with g = s / c; PW→DW: row c = W[s, c].
pub fn slice_matrix(kernel: &Kernel, groups: usize, order: Order, s: usize) -> Result<Vec<f64>> {
    let (count, rows, cols) = slice_shape(kernel, groups, order)?;
    if s >= count {
        return Err(Error::Param(format!("slice {s} out of range (the kernel has {count} slices)")));
    }
    let mut buf = Vec::with_capacity(rows * cols);
    fill_slice(kernel, groups, order, s, &mut buf);
    Ok(buf)
}

/// Slices gathered per block in [`Decomposition::new`]: DW→PW slices are strided in OIHW, and
/// gathering several input channels per pass reads the kernel in contiguous runs.
const FILL_BLOCK: usize = 16;

/// Writes slice `s` into `buf` (cleared first). Shapes must have been checked by [`slice_shape`].
fn fill_slice(kernel: &Kernel, groups: usize, order: Order, s: usize, buf: &mut Vec<f64>) {
    fill_slices(kernel, groups, order, s, 1, buf);
}

/// Writes slices `s0 .. s0 + nb` one after the other into `buf` (cleared first).
fn fill_slices(kernel: &Kernel, groups: usize, order: Order, s0: usize, nb: usize, buf: &mut Vec<f64>) {
    let (c, k2) = (kernel.c, kernel.kh * kernel.kw);
    buf.clear();
    match order {
        Order::DwPw => {
            let nper = kernel.n / groups;
            let size = nper * k2;
            buf.resize(nb * size, 0.0);
            for nl in 0..nper {
                for i in 0..nb {
                    let (g, cl) = ((s0 + i) / c, (s0 + i) % c);
                    let off = ((g * nper + nl) * c + cl) * k2;
                    let dst = &mut buf[i * size + nl * k2..i * size + (nl + 1) * k2];
                    for (o, &x) in dst.iter_mut().zip(&kernel.data[off..off + k2]) {
                        *o = x as f64;
                    }
                }
            }
        }
        Order::PwDw => {
            buf.extend(kernel.data[s0 * c * k2..(s0 + nb) * c * k2].iter().map(|&x| x as f64));
        }
    }
}

/// How many slices of a [`Decomposition`] took each route (see [`Decomposition::new_counting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routes {
    /// Slices decomposed by the fast route and accepted by its checks.
    pub fast: usize,
    /// Slices decomposed by [`svd::svd_with`] (wide slices, or fast-route checks failed).
    pub checked: usize,
}

/// Where the rows of slice `s` sit in the OIHW data: (offset of row 0, distance between rows).
fn slice_rows(kernel: &Kernel, groups: usize, order: Order, s: usize) -> (usize, usize) {
    let (c, k2) = (kernel.c, kernel.kh * kernel.kw);
    match order {
        Order::DwPw => {
            let nper = kernel.n / groups;
            let (g, cl) = (s / c, s % c);
            ((g * nper * c + cl) * k2, c * k2)
        }
        Order::PwDw => (s * c * k2, k2),
    }
}

/// Every slice by the fast route (tall slices only, two at a time), falling back per slice to
/// [`svd::svd_with`].
fn fast_slices(kernel: &Kernel, groups: usize, order: Order, routes: &mut Routes) -> Result<Vec<Slice>> {
    let (count, rows, cols) = slice_shape(kernel, groups, order)?;
    let mut pair = fast::PairWork::new(rows, cols);
    let mut fallback = Fallback { ws: svd::Workspace::default(), buf: Vec::new() };
    let mut slices = Vec::with_capacity(count);
    let load = |work: &mut fast::Work, s: usize| {
        let (base, stride) = slice_rows(kernel, groups, order, s);
        work.load(&kernel.data, base, stride)
    };
    for s in (0..count).step_by(2) {
        let quick = if s + 1 < count {
            if load(&mut pair.a, s) && load(&mut pair.b, s + 1) {
                pair.decompose()
            } else {
                (None, None)
            }
        } else {
            (if load(&mut pair.a, s) { pair.a.decompose() } else { None }, None)
        };
        for (k, q) in [quick.0, quick.1].into_iter().enumerate().take(count - s) {
            let slice = match q {
                Some(slice) => {
                    routes.fast += 1;
                    slice
                }
                None => {
                    routes.checked += 1;
                    fallback.slice(kernel, groups, order, s + k)?
                }
            };
            slices.push(slice);
        }
    }
    Ok(slices)
}

/// The first non-finite kernel value as an [`Error::NonFinite`].
fn nonfinite(kernel: &Kernel) -> Result<()> {
    match kernel.data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::NonFinite(format!("kernel value #{i} is {}", kernel.data[i]))),
        None => Ok(()),
    }
}

/// Scratch of the checked route for the slices the fast route hands back.
struct Fallback {
    ws: svd::Workspace,
    buf: Vec<f64>,
}

impl Fallback {
    /// Slice `s` through [`svd::svd_with`] and [`to_slice`].
    fn slice(&mut self, kernel: &Kernel, groups: usize, order: Order, s: usize) -> Result<Slice> {
        let (_, rows, cols) = slice_shape(kernel, groups, order)?;
        fill_slice(kernel, groups, order, s, &mut self.buf);
        if self.buf.iter().any(|x| !x.is_finite()) {
            nonfinite(kernel)?;
        }
        let dec = svd::svd_with(&mut self.ws, &self.buf, rows, cols).map_err(|e| with_slice(e, order, s))?;
        to_slice(dec, svd::frobenius_sq(&self.buf), order, s)
    }
}

/// Every slice through [`svd::svd_with`] (the route for wide slices, rows < K²).
fn checked_slices(kernel: &Kernel, groups: usize, order: Order) -> Result<Vec<Slice>> {
    let (count, rows, cols) = slice_shape(kernel, groups, order)?;
    let mut ws = svd::Workspace::default();
    let mut buf = Vec::with_capacity(FILL_BLOCK * rows * cols);
    let mut slices = Vec::with_capacity(count);
    for s0 in (0..count).step_by(FILL_BLOCK) {
        let nb = FILL_BLOCK.min(count - s0);
        fill_slices(kernel, groups, order, s0, nb, &mut buf);
        for (i, m) in buf.chunks_exact(rows * cols).enumerate() {
            let s = s0 + i;
            let dec = svd::svd_with(&mut ws, m, rows, cols).map_err(|e| with_slice(e, order, s))?;
            slices.push(to_slice(dec, svd::frobenius_sq(m), order, s)?);
        }
    }
    Ok(slices)
}

/// An SVD turned into a [`Slice`] (pw row k = σ_k u_k, dw row k = v_k), with the energy check.
fn to_slice(dec: svd::Svd, energy: f64, order: Order, s: usize) -> Result<Slice> {
    let ssq: f64 = dec.sigma.iter().map(|x| x * x).sum();
    if (ssq - energy).abs() > 1e-9 * energy {
        return Err(Error::Numeric(format!(
            "{} slice {s}: Σσ² = {ssq:e} but ‖M‖² = {energy:e}",
            order.label()
        )));
    }
    let m = dec.m;
    let mut pw = dec.u;
    for (row, &sig) in pw.chunks_exact_mut(m).zip(&dec.sigma) {
        row.iter_mut().for_each(|x| *x *= sig);
    }
    Ok(Slice { sigma: dec.sigma, dw: dec.v, pw, energy })
}

/// Adds the slice to an SVD error's message.
fn with_slice(e: Error, order: Order, s: usize) -> Error {
    match e {
        Error::Numeric(msg) => Error::Numeric(format!("{} slice {s}: {msg}", order.label())),
        other => other,
    }
}
