//! The project's one seeded pseudo-random generator (SplitMix64, Gaussian samples by Box–Muller)
//! and the seeded test data made with it: Gaussian and low-rank kernels, random feature maps.
//! Used by the built-in examples, the relatives' initialisations, the tests and the benchmarks,
//! so that a seed means the same numbers everywhere.

use crate::error::{Error, Result};
use crate::layer::{checked_len, FeatureMap, Kernel};

/// A small deterministic PRNG (SplitMix64) with Gaussian samples (Box–Muller).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_5EED)
    }

    /// A generator started from a raw state (no mixing of the seed).
    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in [−1, 1).
    pub fn signed(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// `len` values uniform in [−1, 1), as f32.
    pub fn signed_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.signed() as f32).collect()
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// i.i.d. N(0, std²) kernel n × c × k × k.
pub fn gaussian_kernel(n: usize, c: usize, k: usize, std: f64, seed: u64) -> Result<Kernel> {
    let len = checked_len(&[n, c, k, k])?;
    let mut rng = Rng::new(seed);
    Kernel::new(n, c, k, k, (0..len).map(|_| (rng.normal() * std) as f32).collect())
}

/// `W[n,c] = Σ_{j<r} A[n,j]·B[c,j]·D_j` with standard normal A, B, D, scaled so the weights
/// have roughly He variance. Each DW→PW slice M_c = Σ_j (B[c,j]·A[:,j]) D_jᵀ and each PW→DW
/// slice M'_n = Σ_j (A[n,j]·B[:,j]) D_jᵀ has rank ≤ r.
pub fn low_rank_kernel(n: usize, c: usize, k: usize, r: usize, seed: u64) -> Result<Kernel> {
    if r == 0 {
        return Err(Error::Param("rank must be at least 1".into()));
    }
    let k2 = k * k;
    let len = checked_len(&[n, c, k, k, r])? / r;
    let mut rng = Rng::new(seed);
    let mut draw = |m: usize| (0..m).map(|_| rng.normal()).collect::<Vec<f64>>();
    let (a, b, d) = (draw(n * r), draw(c * r), draw(r * k2));
    let scale = (2.0 / (c * k2) as f64).sqrt() / (r as f64).sqrt();
    let mut w = vec![0.0f32; len];
    for o in 0..n {
        for i in 0..c {
            for p in 0..k2 {
                let v: f64 = (0..r).map(|j| a[o * r + j] * b[i * r + j] * d[j * k2 + p]).sum();
                w[(o * c + i) * k2 + p] = (v * scale) as f32;
            }
        }
    }
    Kernel::new(n, c, k, k, w)
}

/// A c × h × w feature map of standard normal values .
pub fn random_input(c: usize, h: usize, w: usize, seed: u64) -> Result<FeatureMap> {
    let len = checked_len(&[c, h, w])?;
    let mut rng = Rng::new(seed);
    FeatureMap::new(c, h, w, (0..len).map(|_| rng.normal() as f32).collect())
}
