//! Second moments of a conv layer's input patches, accumulated image by image in f64.
//!
//! A patch is what the conv sees at one output position: for input channel c, the K² taps
//! `x[c, oy·s_y + ky·d_y − pad_top, ox·s_x + kx·d_x − pad_left]` (zero outside the map), tap index
//! `ky·kw + kx`. Within a group the joint patch is the c·K² vector ordered (channel, tap), the same
//! order as a row of the OIHW kernel, so `y_n = ⟨W[n], p⟩ + b_n`.

use super::linalg::{mirror_upper, syrk_upper};
use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, FeatureMap, Kernel};
use serde::{Deserialize, Serialize};

/// Largest c·K² (per group) whose full joint moment S is kept by default: 256 channels of 3×3.
/// S then takes (c·K²)² f64 per group (42 MB at 2304).
pub const DEFAULT_FULL_CAP: usize = 2304;

/// Output positions gathered per block when accumulating (bounds the patch buffer to
/// c·K²·BLOCK f64).
const BLOCK: usize = 256;

/// What a [`PatchStats`] collects besides the per-channel moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsOptions {
    /// Keep the full joint moment S (c·K² × c·K² per group) when c·K² ≤ this. Above it only the
    /// per-channel K² × K² blocks and the c × c channel matrix are kept: enough for both
    /// data-aware decouplings (DW→PW needs the blocks, PW→DW the Kronecker factors by moments),
    /// not for the expected output error, the Van Loan–Pitsianis factor or the refit.
    pub full_cap: usize,
    /// Also collect the cross moment R = E[y pᵀ] with target outputs (and E‖y‖²): the
    /// accumulator is then fed with [`PatchStats::add_pair`].
    pub targets: bool,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions { full_cap: DEFAULT_FULL_CAP, targets: false }
    }
}

/// Uncentred second moments of one conv layer's input patches (and optionally the cross moment
/// with target outputs), as f64 sums with a count. Feed it one image at a time; merge the
/// accumulators of workers with [`PatchStats::merge`]. Expectations are sums / [`Self::count`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchStats {
    /// Output channels, input channels per group, kernel height and width of the layer.
    pub n: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    /// The layer's geometry (stride, padding, dilation, groups): the patches are those it sees.
    pub geometry: ConvGeometry,
    /// Whether the full joint moment is kept (c·K² ≤ `full_cap`).
    pub full: bool,
    /// Whether targets are collected.
    pub targets: bool,
    images: u64,
    positions: u64,
    /// Per input channel (c·groups of them): Σ p_c p_cᵀ, K² × K², upper triangle.
    channel: Vec<f64>,
    /// Per group: Σ p pᵀ (c·K² × c·K², upper triangle) when `full`, else Σ P Pᵀ (c × c, upper).
    joint: Vec<f64>,
    /// Σ y_n pᵀ, one row of c·K² per output channel n (its group's patch), when `targets`.
    cross: Vec<f64>,
    /// Σ y_n² per output channel, when `targets`.
    target_sq: Vec<f64>,
}

impl PatchStats {
    /// An empty accumulator for the input of a conv with `kernel`'s shape and `geometry`.
    pub fn new(kernel: &Kernel, geometry: ConvGeometry, opts: StatsOptions) -> Result<Self> {
        let (n, c, kh, kw) = (kernel.n, kernel.c, kernel.kh, kernel.kw);
        let groups = geometry.groups;
        if n == 0 || c == 0 || kh == 0 || kw == 0 {
            return Err(Error::Shape(format!("kernel {n}×{c}×{kh}×{kw} has a zero dimension")));
        }
        if groups == 0 || n % groups != 0 {
            return Err(Error::Shape(format!("{n} output channels cannot be split into {groups} groups")));
        }
        let k2 = kh * kw;
        let d = c.checked_mul(k2).ok_or_else(|| Error::TooLarge("c·K² overflows".into()))?;
        let full = d <= opts.full_cap;
        let per_group = if full { d * d } else { c * c };
        let total = |a: usize, b: usize| {
            a.checked_mul(b)
                .filter(|&l| l <= crate::layer::MAX_ELEMENTS)
                .ok_or_else(|| Error::TooLarge(format!("statistics of {a} × {b} values")))
        };
        let joint = vec![0.0; total(groups, per_group)?];
        let channel = vec![0.0; total(c * groups, k2 * k2)?];
        let (cross, target_sq) =
            if opts.targets { (vec![0.0; total(n, d)?], vec![0.0; n]) } else { (Vec::new(), Vec::new()) };
        Ok(PatchStats {
            n,
            c,
            kh,
            kw,
            geometry,
            full,
            targets: opts.targets,
            images: 0,
            positions: 0,
            channel,
            joint,
            cross,
            target_sq,
        })
    }

    /// K² = kh·kw.
    pub fn k2(&self) -> usize {
        self.kh * self.kw
    }

    /// Groups of the layer.
    pub fn groups(&self) -> usize {
        self.geometry.groups
    }

    /// Patches seen (output positions summed over images): the divisor of every expectation.
    pub fn count(&self) -> u64 {
        self.positions
    }

    /// Images fed.
    pub fn images(&self) -> u64 {
        self.images
    }

    /// Adds one image's input activations (no targets). Refused when the accumulator collects
    /// targets (use [`Self::add_pair`]) and on NaN or infinity (the accumulator is left as it was).
    pub fn add(&mut self, x: &FeatureMap) -> Result<()> {
        if self.targets {
            return Err(Error::Param("this accumulator collects targets: feed it with add_pair".into()));
        }
        self.accumulate(x, None)
    }

    /// Adds one image: `x` the layer's input (for the refit: the *decoupled* network's
    /// activations) and `y` the target output for the same image (the *original* layer's output
    /// on the *original* network's activations), `bias` (if any) subtracted from `y`, so that the
    /// cross moment pairs a bias-free target with the patches of `x`. `y` must have the layer's
    /// output shape on `x`.
    pub fn add_pair(&mut self, x: &FeatureMap, y: &FeatureMap, bias: Option<&[f32]>) -> Result<()> {
        if !self.targets {
            return Err(Error::Param("this accumulator was made without targets".into()));
        }
        if let Some(b) = bias {
            if b.len() != self.n {
                return Err(Error::Shape(format!("bias has {} values for {} outputs", b.len(), self.n)));
            }
            if b.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite("bias holds NaN or infinity".into()));
            }
        }
        self.accumulate(x, Some((y, bias)))
    }

    /// Adds another accumulator's sums (same layer shape, geometry and options).
    pub fn merge(&mut self, other: &PatchStats) -> Result<()> {
        let same = (self.n, self.c, self.kh, self.kw, self.geometry, self.full, self.targets)
            == (other.n, other.c, other.kh, other.kw, other.geometry, other.full, other.targets);
        if !same {
            return Err(Error::Shape("cannot merge statistics of different layers or options".into()));
        }
        for (a, b) in [
            (&mut self.channel, &other.channel),
            (&mut self.joint, &other.joint),
            (&mut self.cross, &other.cross),
            (&mut self.target_sq, &other.target_sq),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.images += other.images;
        self.positions += other.positions;
        Ok(())
    }

    fn expectation(&self) -> Result<f64> {
        if self.positions == 0 {
            return Err(Error::Param("the statistics are empty (no image was added)".into()));
        }
        Ok(1.0 / self.positions as f64)
    }

    /// E[p_c p_cᵀ] of input channel `ch` (global index), K² × K² row-major.
    pub fn channel_moment(&self, ch: usize) -> Result<Vec<f64>> {
        let k2 = self.k2();
        if ch >= self.c * self.groups() {
            return Err(Error::Param(format!("channel {ch} out of range")));
        }
        let inv = self.expectation()?;
        let mut m: Vec<f64> =
            self.channel[ch * k2 * k2..(ch + 1) * k2 * k2].iter().map(|v| v * inv).collect();
        mirror_upper(&mut m, k2);
        Ok(m)
    }

    /// The full joint moment S = E[p pᵀ] of group `g` (c·K² × c·K², index (channel, tap)), or an
    /// error when it was not kept (c·K² above the cap).
    pub fn joint_moment(&self, g: usize) -> Result<Vec<f64>> {
        let d = self.c * self.k2();
        if !self.full {
            return Err(Error::Param(format!(
                "the full patch moment was not kept (c·K² = {d} is above the cap): raise StatsOptions::full_cap"
            )));
        }
        if g >= self.groups() {
            return Err(Error::Param(format!("group {g} out of range")));
        }
        let inv = self.expectation()?;
        let mut m: Vec<f64> = self.joint[g * d * d..(g + 1) * d * d].iter().map(|v| v * inv).collect();
        mirror_upper(&mut m, d);
        Ok(m)
    }

    /// E[P Pᵀ] of group `g` (c × c): entry (c, c') = Σ_taps E[p_c[i] p_c'[i]].
    pub fn channel_matrix(&self, g: usize) -> Result<Vec<f64>> {
        let (c, k2) = (self.c, self.k2());
        if !self.full {
            if g >= self.groups() {
                return Err(Error::Param(format!("group {g} out of range")));
            }
            let inv = self.expectation()?;
            let mut m: Vec<f64> = self.joint[g * c * c..(g + 1) * c * c].iter().map(|v| v * inv).collect();
            mirror_upper(&mut m, c);
            return Ok(m);
        }
        let s = self.joint_moment(g)?;
        let d = c * k2;
        Ok((0..c * c).map(|ij| (0..k2).map(|t| s[(ij / c * k2 + t) * d + ij % c * k2 + t]).sum()).collect())
    }

    /// R = E[y pᵀ] rows of group `g`: (N/groups) × c·K², row n_local for output g·N/groups + n_local.
    pub fn cross_moment(&self, g: usize) -> Result<Vec<f64>> {
        if !self.targets {
            return Err(Error::Param("the statistics hold no targets (StatsOptions::targets)".into()));
        }
        let (nper, d) = (self.n / self.groups(), self.c * self.k2());
        if g >= self.groups() {
            return Err(Error::Param(format!("group {g} out of range")));
        }
        let inv = self.expectation()?;
        Ok(self.cross[g * nper * d..(g + 1) * nper * d].iter().map(|v| v * inv).collect())
    }

    /// E[y_n²] of every output channel (targets only).
    pub fn target_moment(&self) -> Result<Vec<f64>> {
        if !self.targets {
            return Err(Error::Param("the statistics hold no targets (StatsOptions::targets)".into()));
        }
        let inv = self.expectation()?;
        Ok(self.target_sq.iter().map(|v| v * inv).collect())
    }

    /// Validates `x` (and `y`), then adds them block by block.
    fn accumulate(&mut self, x: &FeatureMap, target: Option<(&FeatureMap, Option<&[f32]>)>) -> Result<()> {
        let (c, k2, groups) = (self.c, self.k2(), self.groups());
        if x.c != c * groups || x.data.len() != x.c * x.h * x.w {
            return Err(Error::Shape(format!(
                "input {}×{}×{} ({} values) for a layer of {} input channels",
                x.c,
                x.h,
                x.w,
                x.data.len(),
                c * groups
            )));
        }
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("activation #{i} is {}", x.data[i])));
        }
        let (ho, wo) = self.geometry.output_size(x.h, x.w, self.kh, self.kw)?;
        if let Some((y, _)) = target {
            if (y.c, y.h, y.w) != (self.n, ho, wo) || y.data.len() != self.n * ho * wo {
                return Err(Error::Shape(format!(
                    "target {}×{}×{} does not match the layer's output {}×{ho}×{wo}",
                    y.c, y.h, y.w, self.n
                )));
            }
            if let Some(i) = y.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!("target value #{i} is {}", y.data[i])));
            }
        }
        let d = c * k2;
        let npos = ho * wo;
        let mut buf = vec![0.0f64; d * BLOCK.min(npos)];
        let mut ybuf = vec![0.0f64; BLOCK.min(npos)];
        for g in 0..groups {
            for p0 in (0..npos).step_by(BLOCK) {
                let len = BLOCK.min(npos - p0);
                let patches = &mut buf[..d * len];
                self.gather(x, g, p0, len, wo, patches);
                for cl in 0..c {
                    let ch = g * c + cl;
                    let rows = &patches[cl * k2 * len..(cl + 1) * k2 * len];
                    syrk_upper(rows, k2, len, &mut self.channel[ch * k2 * k2..(ch + 1) * k2 * k2], k2, 0);
                }
                if self.full {
                    syrk_upper(patches, d, len, &mut self.joint[g * d * d..(g + 1) * d * d], d, 0);
                } else {
                    self.add_channel_matrix(g, patches, len);
                }
                if let Some((y, bias)) = target {
                    let nper = self.n / groups;
                    for nl in 0..nper {
                        let n = g * nper + nl;
                        let b = bias.map_or(0.0, |b| b[n] as f64);
                        let ys = &y.data[n * npos + p0..n * npos + p0 + len];
                        for (o, &v) in ybuf.iter_mut().zip(ys) {
                            *o = v as f64 - b;
                        }
                        let yb = &ybuf[..len];
                        self.target_sq[n] += yb.iter().map(|v| v * v).sum::<f64>();
                        for (r, row) in
                            self.cross[n * d..(n + 1) * d].iter_mut().zip(patches.chunks_exact(len))
                        {
                            *r += super::linalg::dot(yb, row);
                        }
                    }
                }
            }
        }
        self.images += 1;
        self.positions += npos as u64;
        Ok(())
    }

    /// Writes the patches of group `g` at output positions p0..p0+len into `out`, feature-major:
    /// row (cl·K² + tap) holds that feature at the `len` positions.
    fn gather(&self, x: &FeatureMap, g: usize, p0: usize, len: usize, wo: usize, out: &mut [f64]) {
        let (c, kh, kw) = (self.c, self.kh, self.kw);
        let geo = &self.geometry;
        let (h, w) = (x.h as isize, x.w as isize);
        for cl in 0..c {
            let plane = x.channel(g * c + cl);
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut out[((cl * kh + ky) * kw + kx) * len..][..len];
                    for (i, o) in row.iter_mut().enumerate() {
                        let (oy, ox) = ((p0 + i) / wo, (p0 + i) % wo);
                        let iy =
                            (oy * geo.stride.0 + ky * geo.dilation.0) as isize - geo.padding.top as isize;
                        let ix =
                            (ox * geo.stride.1 + kx * geo.dilation.1) as isize - geo.padding.left as isize;
                        *o = if iy >= 0 && iy < h && ix >= 0 && ix < w {
                            plane[iy as usize * x.w + ix as usize] as f64
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }

    /// Σ P Pᵀ over the block (c × c, upper triangle): entry (c, c') sums the products of the same
    /// tap of channels c and c'.
    fn add_channel_matrix(&mut self, g: usize, patches: &[f64], len: usize) {
        let (c, k2) = (self.c, self.k2());
        // Regroup tap-major: for each tap, the c rows of that tap, then a syrk per tap.
        let mut tap_rows = vec![0.0f64; c * len];
        let out = &mut self.joint[g * c * c..(g + 1) * c * c];
        for t in 0..k2 {
            for cl in 0..c {
                tap_rows[cl * len..(cl + 1) * len].copy_from_slice(&patches[(cl * k2 + t) * len..][..len]);
            }
            syrk_upper(&tap_rows, c, len, out, c, 0);
        }
    }
}
