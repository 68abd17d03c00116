//! Network decoupling among its relatives (METHOD.md "Related decompositions"): channel (CD),
//! spatial (SD), four-factor CP, MobileNet-style CP and Tucker-2 decompositions of one conv kernel,
//! each as factors, reconstruction, relative weight error, MACs/params and a forward pass built
//! from its layers; plus the equal-cost comparison with ND's two orderings ([`compare`]).
//!
//! All of them work on an ungrouped kernel (groups = 1). Costs are per output pixel at stride 1,
//! which for these layers also equals the parameter count (no bias).
//!
//! | method | layers | MACs per output pixel |
//! |---|---|---|
//! | channel (d′) | K×K C→d′, 1×1 d′→N | d′·(C·K² + N) |
//! | spatial (R) | Kh×1 C→R, 1×Kw R→N | R·(Kh·C + Kw·N) |
//! | cp (R) | 1×1 C→R, Kh×1 DW, 1×Kw DW, 1×1 R→N | R·(C + Kh + Kw + N) |
//! | cp-mobilenet (R) | 1×1 C→R, K×K DW, 1×1 R→N | R·(C + K² + N) |
//! | tucker2 (R3, R4) | 1×1 C→R3, K×K R3→R4, 1×1 R4→N | C·R3 + R3·R4·K² + R4·N |

mod closed;
mod compare;
mod cp;
mod dense;
mod dgemm;
#[doc(hidden)]
pub use dgemm::packed_gemm_self_check;
mod linalg;
mod tucker;

pub mod session;

pub use closed::{ChannelDecomposition, SpatialDecomposition};
pub use compare::{compare, error_at, error_curve, largest_rank, CompareOptions, ComparisonRow, CurvePoint};
pub use cp::{
    AlsOptions, AlsReport, Cp4, CpMobile, Degeneracy, Init, StopReason, DEFAULT_TOL, F32_MIN_WORK, SMALL_TOL,
    SMALL_WORK, STALL_WINDOW,
};
pub use tucker::{Tucker2, TuckerBasis, TuckerOptions, HOOI_WINDOW};

use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, FeatureMap, Kernel, Padding};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Progress/cancel callback of the iterative methods: called after every sweep with the sweep
/// number (1-based) and the relative error reached; returning `false` cancels.
pub type Progress<'a> = &'a mut dyn FnMut(usize, f64) -> bool;

/// A callback that never cancels.
pub fn no_progress() -> impl FnMut(usize, f64) -> bool {
    |_, _| true
}

/// The compared methods, with their command-line / JSON ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Network decoupling, DW→PW.
    NdDwPw,
    /// Network decoupling, PW→DW.
    NdPwDw,
    /// Channel decomposition (Zhang et al. 2016).
    Channel,
    /// Spatial decomposition (closed form of Tai et al. 2016).
    Spatial,
    /// Four-factor CP (Lebedev et al. 2015).
    Cp,
    /// MobileNet-style three-factor CP.
    CpMobilenet,
    /// Tucker-2 (Kim et al. 2016).
    Tucker2,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 7] = [
        Method::NdDwPw,
        Method::NdPwDw,
        Method::Channel,
        Method::Spatial,
        Method::Cp,
        Method::CpMobilenet,
        Method::Tucker2,
    ];

    /// The id used on the command line and in JSON.
    pub fn id(&self) -> &'static str {
        match self {
            Method::NdDwPw => "nd-dw-pw",
            Method::NdPwDw => "nd-pw-dw",
            Method::Channel => "channel",
            Method::Spatial => "spatial",
            Method::Cp => "cp",
            Method::CpMobilenet => "cp-mobilenet",
            Method::Tucker2 => "tucker2",
        }
    }

    /// Parses an id.
    pub fn from_id(s: &str) -> Result<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.id() == s)
            .ok_or_else(|| Error::Param(format!("unknown method '{s}'")))
    }

    /// Whether the method is computed iteratively (ALS / HOOI) rather than in closed form.
    pub fn is_iterative(&self) -> bool {
        matches!(self, Method::Cp | Method::CpMobilenet | Method::Tucker2)
    }
}

/// A method's rank: one number, or (R3, R4) for Tucker-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rank {
    /// T, d′ or R.
    One(usize),
    /// Tucker-2's (R3, R4).
    Two(usize, usize),
}

impl std::fmt::Display for Rank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rank::One(r) => write!(f, "{r}"),
            Rank::Two(a, b) => write!(f, "[{a}, {b}]"),
        }
    }
}

/// Shape of an ungrouped kernel: N, C, Kh, Kw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Output channels N.
    pub n: usize,
    /// Input channels C.
    pub c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

impl Dims {
    /// The dims of a kernel.
    pub fn of(k: &Kernel) -> Dims {
        Dims { n: k.n, c: k.c, kh: k.kh, kw: k.kw }
    }

    /// K² = Kh·Kw.
    pub fn k2(&self) -> usize {
        self.kh * self.kw
    }

    /// MACs per output pixel (= params) of the regular layer: N·C·K².
    pub fn regular_macs(&self) -> u64 {
        (self.n * self.c * self.k2()) as u64
    }

    /// MACs per output pixel at stride 1 of `method` at `rank` (= its parameter count, no bias).
    /// A `Rank::Two` is only meaningful for Tucker-2; other methods read its first entry.
    pub fn macs(&self, method: Method, rank: Rank) -> u64 {
        let (n, c, kh, kw, k2) =
            (self.n as u64, self.c as u64, self.kh as u64, self.kw as u64, self.k2() as u64);
        let (r, r4) = match rank {
            Rank::One(r) => (r as u64, r as u64),
            Rank::Two(a, b) => (a as u64, b as u64),
        };
        match method {
            Method::NdDwPw => c * r * k2 + n * c * r,
            Method::NdPwDw => n * r * c + n * r * k2,
            Method::Channel => r * (c * k2 + n),
            Method::Spatial => r * (kh * c + kw * n),
            Method::Cp => r * (c + kh + kw + n),
            Method::CpMobilenet => r * (c + k2 + n),
            Method::Tucker2 => c * r + r * r4 * k2 + r4 * n,
        }
    }

    /// The largest meaningful rank of a method: where it is exact (ND, CD, SD), or where it stops
    /// being cheaper than the regular layer (CP), or min(C, N) for Tucker-2 with R3 = R4
    /// (R3 ≤ C, R4 ≤ N are clamped by [`Dims::tucker_ranks`]).
    pub fn max_rank(&self, method: Method) -> usize {
        let (n, c, kh, kw, k2) = (self.n, self.c, self.kh, self.kw, self.k2());
        match method {
            Method::NdDwPw => n.min(k2),
            Method::NdPwDw => c.min(k2),
            Method::Channel => n.min(c * k2),
            Method::Spatial => (c * kh).min(n * kw),
            Method::Cp | Method::CpMobilenet => {
                let per = self.macs(method, Rank::One(1)).max(1);
                (self.regular_macs() / per).max(1) as usize
            }
            Method::Tucker2 => c.max(n),
        }
    }

    /// Tucker-2 ranks for the scalar rank `r` with R3 = R4 = r, clamped to R3 ≤ C, R4 ≤ N.
    pub fn tucker_ranks(&self, r: usize) -> Rank {
        Rank::Two(r.min(self.c), r.min(self.n))
    }

    /// The rank value a method uses for the scalar rank `r`.
    pub fn rank_of(&self, method: Method, r: usize) -> Rank {
        match method {
            Method::Tucker2 => self.tucker_ranks(r),
            _ => Rank::One(r),
        }
    }
}

/// What every related decomposition offers.
pub trait Relative {
    /// Which method this is.
    fn method(&self) -> Method;
    /// Its rank.
    fn rank(&self) -> Rank;
    /// The kernel its layers compute together.
    fn reconstruct(&self) -> Result<Kernel>;
    /// ‖W − reconstruct‖_F / ‖W‖_F (0 for a zero kernel).
    fn rel_weight_error(&self) -> f64;
    /// Shape of the approximated kernel.
    fn dims(&self) -> Dims;
    /// MACs per output pixel at stride 1.
    fn macs_per_pixel(&self) -> u64 {
        self.dims().macs(self.method(), self.rank())
    }
    /// Parameters (no bias); equal to the per-pixel MACs for these layers.
    fn params(&self) -> u64 {
        self.macs_per_pixel()
    }
    /// Runs the method's layers on `x` with the layer's geometry (groups must be 1); the bias is
    /// added once, at the end. Equals `conv2d(x, reconstruct(), bias, geom)` up to rounding.
    fn forward(&self, x: &FeatureMap, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap>;
}

/// Checks that a kernel can be decomposed here: non-empty, finite.
pub(crate) fn check_kernel(k: &Kernel) -> Result<()> {
    if k.n == 0 || k.c == 0 || k.kh == 0 || k.kw == 0 {
        return Err(Error::Shape("kernel has a zero dimension".into()));
    }
    if k.data.len() != k.n * k.c * k.kh * k.kw {
        return Err(Error::Shape("kernel data length does not match its shape".into()));
    }
    if k.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("kernel holds NaN or infinity".into()));
    }
    Ok(())
}

/// Rejects grouped geometries (the relatives decompose a whole ungrouped layer).
pub(crate) fn check_ungrouped(geom: &ConvGeometry) -> Result<()> {
    if geom.groups != 1 {
        return Err(Error::Param(format!(
            "the related decompositions need an ungrouped conv, this one has {} groups",
            geom.groups
        )));
    }
    Ok(())
}

/// Checks a requested rank against 1..=max.
pub(crate) fn check_rank(what: &str, r: usize, max: usize) -> Result<()> {
    if r == 0 || r > max {
        return Err(Error::Param(format!("{what} rank {r} is outside 1..={max}")));
    }
    Ok(())
}

/// The vertical half of a geometry: stride, padding and dilation along the height only.
pub fn vertical_geometry(g: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        stride: (g.stride.0, 1),
        padding: Padding { top: g.padding.top, bottom: g.padding.bottom, left: 0, right: 0 },
        dilation: (g.dilation.0, 1),
        groups: 1,
    }
}

/// The horizontal half of a geometry: stride, padding and dilation along the width only.
pub fn horizontal_geometry(g: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        stride: (1, g.stride.1),
        padding: Padding { top: 0, bottom: 0, left: g.padding.left, right: g.padding.right },
        dilation: (1, g.dilation.1),
        groups: 1,
    }
}

/// The kernel as an f64 N × (C·K²) matrix (row-major order of the kernel).
pub(crate) fn mode_n_matrix(k: &Kernel) -> DMatrix<f64> {
    let cols = k.c * k.kh * k.kw;
    DMatrix::from_fn(k.n, cols, |r, c| k.data[r * cols + c] as f64)
}

/// A kernel from an f64 N × (C·K²) matrix.
pub(crate) fn kernel_from_mode_n(m: &DMatrix<f64>, d: Dims) -> Result<Kernel> {
    let cols = d.c * d.k2();
    let mut data = Vec::with_capacity(d.n * cols);
    for r in 0..d.n {
        for c in 0..cols {
            data.push(m[(r, c)] as f32);
        }
    }
    Kernel::new(d.n, d.c, d.kh, d.kw, data)
}

/// Row-major f32 copy of a matrix (for conv weights).
pub(crate) fn to_f32_rows(m: &DMatrix<f64>) -> Vec<f32> {
    let mut v = Vec::with_capacity(m.len());
    for r in 0..m.nrows() {
        for c in 0..m.ncols() {
            v.push(m[(r, c)] as f32);
        }
    }
    v
}

/// Relative Frobenius error of an f64 N × (C·K²) approximation against the kernel.
pub(crate) fn rel_error_mode_n(k: &Kernel, approx: &DMatrix<f64>) -> f64 {
    let w = mode_n_matrix(k);
    let total = w.norm();
    if total == 0.0 {
        return if approx.norm() == 0.0 { 0.0 } else { 1.0 };
    }
    (w - approx).norm() / total
}
