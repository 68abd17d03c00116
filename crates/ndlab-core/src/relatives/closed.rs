//! The closed forms: channel decomposition (truncated SVD of the N × (C·K²) matrix) and spatial
//! decomposition (truncated SVD of the (C·Kh) × (N·Kw) matrix, Tai et al. 2016).

use super::linalg::{low_rank, sigma_sq, tail_error, tail_errors, LowRank};
use super::{
    check_kernel, check_rank, check_ungrouped, horizontal_geometry, kernel_from_mode_n, mode_n_matrix,
    to_f32_rows, vertical_geometry, Dims, Method, Rank, Relative,
};
use crate::conv::{conv2d, pointwise};
use crate::error::Result;
use crate::layer::{ConvGeometry, FeatureMap, Kernel};
use nalgebra::DMatrix;

/// Channel decomposition at rank d′: `d′` K×K filters C → d′ (`filters`, d′ × C × Kh × Kw), then a
/// 1×1 conv d′ → N (`pw`, N × d′). Exact at d′ = min(N, C·K²); its error is the σ tail.
#[derive(Debug, Clone)]
pub struct ChannelDecomposition {
    dims: Dims,
    rank: usize,
    /// The d′ spatial filters as a d′ × C × Kh × Kw kernel.
    pub filters: Kernel,
    /// The 1×1 weights, N × d′ row-major.
    pub pw: Vec<f32>,
    lr: LowRank,
}

impl ChannelDecomposition {
    /// Decomposes `kernel` at rank `d` (1..=min(N, C·K²)).
    pub fn new(kernel: &Kernel, d: usize) -> Result<Self> {
        check_kernel(kernel)?;
        let dims = Dims::of(kernel);
        check_rank("channel decomposition", d, dims.max_rank(Method::Channel))?;
        let lr = low_rank(&mode_n_matrix(kernel), d)?;
        let filters = Kernel::new(d, dims.c, dims.kh, dims.kw, to_f32_rows(&lr.right))?;
        let pw = to_f32_rows(&lr.left);
        Ok(ChannelDecomposition { dims, rank: d, filters, pw, lr })
    }

    /// The squared singular values of the N × (C·K²) matrix, descending.
    pub fn sigma_sq(&self) -> &[f64] {
        &self.lr.sigma_sq
    }

    /// Relative weight error for every d′ = 1..=min(N, C·K²) (index d′−1), from the σ tails
    /// (singular values only).
    pub fn error_curve(kernel: &Kernel) -> Result<Vec<f64>> {
        check_kernel(kernel)?;
        Ok(tail_errors(&sigma_sq(&mode_n_matrix(kernel))?))
    }
}

impl Relative for ChannelDecomposition {
    fn method(&self) -> Method {
        Method::Channel
    }
    fn rank(&self) -> Rank {
        Rank::One(self.rank)
    }
    fn dims(&self) -> Dims {
        self.dims
    }
    fn reconstruct(&self) -> Result<Kernel> {
        kernel_from_mode_n(&(&self.lr.left * &self.lr.right), self.dims)
    }
    fn rel_weight_error(&self) -> f64 {
        tail_error(&self.lr.sigma_sq, self.rank)
    }
    fn forward(&self, x: &FeatureMap, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap> {
        check_ungrouped(geom)?;
        let h = conv2d(x, &self.filters, None, geom)?;
        pointwise(&h, &self.pw, self.dims.n, 1, bias)
    }
}

/// Spatial decomposition at rank R: R vertical Kh×1 filters C → R (`vertical`, R × C × Kh × 1),
/// then R → N horizontal 1×Kw (`horizontal`, N × R × 1 × Kw). Exact at R = min(C·Kh, N·Kw).
#[derive(Debug, Clone)]
pub struct SpatialDecomposition {
    dims: Dims,
    rank: usize,
    /// The vertical filters, R × C × Kh × 1.
    pub vertical: Kernel,
    /// The horizontal filters, N × R × 1 × Kw.
    pub horizontal: Kernel,
    lr: LowRank,
}

/// The (C·Kh) × (N·Kw) matrix with rows (c, i) and columns (n, j).
fn spatial_matrix(k: &Kernel) -> DMatrix<f64> {
    let (c, kh, kw) = (k.c, k.kh, k.kw);
    DMatrix::from_fn(c * kh, k.n * kw, |row, col| {
        let (ci, i) = (row / kh, row % kh);
        let (n, j) = (col / kw, col % kw);
        k.data[((n * c + ci) * kh + i) * kw + j] as f64
    })
}

impl SpatialDecomposition {
    /// Decomposes `kernel` at rank `r` (1..=min(C·Kh, N·Kw)).
    pub fn new(kernel: &Kernel, r: usize) -> Result<Self> {
        check_kernel(kernel)?;
        let dims = Dims::of(kernel);
        check_rank("spatial decomposition", r, dims.max_rank(Method::Spatial))?;
        let lr = low_rank(&spatial_matrix(kernel), r)?;
        let (c, n, kh, kw) = (dims.c, dims.n, dims.kh, dims.kw);
        let mut v = vec![0f32; r * c * kh];
        for (t, chunk) in v.chunks_exact_mut(c * kh).enumerate() {
            for (row, out) in chunk.iter_mut().enumerate() {
                *out = lr.left[(row, t)] as f32;
            }
        }
        let mut hz = vec![0f32; n * r * kw];
        for ni in 0..n {
            for t in 0..r {
                for j in 0..kw {
                    hz[(ni * r + t) * kw + j] = lr.right[(t, ni * kw + j)] as f32;
                }
            }
        }
        let vertical = Kernel::new(r, c, kh, 1, v)?;
        let horizontal = Kernel::new(n, r, 1, kw, hz)?;
        Ok(SpatialDecomposition { dims, rank: r, vertical, horizontal, lr })
    }

    /// The squared singular values of the (C·Kh) × (N·Kw) matrix, descending.
    pub fn sigma_sq(&self) -> &[f64] {
        &self.lr.sigma_sq
    }

    /// Relative weight error for every R = 1..=min(C·Kh, N·Kw) (index R−1), from the σ tails
    /// (singular values only).
    pub fn error_curve(kernel: &Kernel) -> Result<Vec<f64>> {
        check_kernel(kernel)?;
        Ok(tail_errors(&sigma_sq(&spatial_matrix(kernel))?))
    }
}

impl Relative for SpatialDecomposition {
    fn method(&self) -> Method {
        Method::Spatial
    }
    fn rank(&self) -> Rank {
        Rank::One(self.rank)
    }
    fn dims(&self) -> Dims {
        self.dims
    }
    fn reconstruct(&self) -> Result<Kernel> {
        let m = &self.lr.left * &self.lr.right;
        let d = self.dims;
        let mut data = vec![0f32; d.n * d.c * d.k2()];
        for (idx, out) in data.iter_mut().enumerate() {
            let j = idx % d.kw;
            let i = (idx / d.kw) % d.kh;
            let c = (idx / d.k2()) % d.c;
            let n = idx / (d.c * d.k2());
            *out = m[(c * d.kh + i, n * d.kw + j)] as f32;
        }
        Kernel::new(d.n, d.c, d.kh, d.kw, data)
    }
    fn rel_weight_error(&self) -> f64 {
        tail_error(&self.lr.sigma_sq, self.rank)
    }
    fn forward(&self, x: &FeatureMap, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap> {
        check_ungrouped(geom)?;
        let v = conv2d(x, &self.vertical, None, &vertical_geometry(geom))?;
        conv2d(&v, &self.horizontal, bias, &horizontal_geometry(geom))
    }
}
