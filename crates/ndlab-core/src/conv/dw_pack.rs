//! The fused DW→PW depthwise source over a zero-padded input (horizontal stride 1).
//!
//! With the padding materialised once per forward, output pixel `(oy, ox)` of intermediate
//! channel `k` is `Σ_taps w[k, t] · xp[ci, oy·sh·wp + ox + shift_t]` (shift_t = ky·dh·wp + kx·dw)
//! with no border cases: every output row is computed in chunks of 8 consecutive pixels with all
//! taps accumulated in registers. A row that is not a multiple of 8 wide ends with a chunk that
//! overlaps the previous one (stores, not adds: the overlap rewrites the same values); a segment
//! narrower than 8 computes lanes past its end, which land either on pixels computed later
//! (rewritten) or in the margins of the block buffer. Per B block the depthwise rows of 8
//! intermediate channels are computed into a contiguous buffer, then copied panel by panel
//! (sequential writes into the packed layout).

use super::dw::PlaneGeom;
use super::gemm::BSource;
use crate::error::{Error, Result};
use crate::layer::{checked_len, ConvGeometry, FeatureMap};

/// Zeros after the last padded plane: a chunk reads up to 7 values past the last pixel it uses.
const MARGIN: usize = 8;
/// Buffer slots before the block's first pixel (a chunk may end there and start up to 7 earlier).
const FRONT: usize = 8;
/// Buffer slots after the block's last pixel (forward lanes of a short segment; the last panel's
/// zero padding, up to 15 values).
const BACK: usize = 16;
/// Output pixels per chunk.
const LANES: usize = 8;
/// Intermediate channels computed into the block buffer before it is copied into the panels.
const ROWS: usize = 8;

/// The input of a depthwise op zero-padded on all four sides, followed by [`MARGIN`] zeros.
pub(crate) struct PaddedPlanes {
    pub data: Vec<f32>,
    pub hp: usize,
    pub wp: usize,
}

impl PaddedPlanes {
    /// Copies the `c` planes of `x` into padded planes of `(top + h + bottom) × (left + w + right)`.
    pub fn new(x: &FeatureMap, geom: &ConvGeometry) -> Result<PaddedPlanes> {
        let p = geom.padding;
        let hp = x.h.checked_add(p.top).and_then(|v| v.checked_add(p.bottom));
        let wp = x.w.checked_add(p.left).and_then(|v| v.checked_add(p.right));
        let (Some(hp), Some(wp)) = (hp, wp) else {
            return Err(Error::Shape("padding too large".into()));
        };
        let len = checked_len(&[x.c, hp, wp])?;
        let mut data = vec![0.0f32; len + MARGIN];
        if x.h * x.w > 0 {
            for (dst, src) in data.chunks_exact_mut(hp * wp).zip(x.data.chunks_exact(x.h * x.w)) {
                for (drow, srow) in dst[p.top * wp..].chunks_exact_mut(wp).zip(src.chunks_exact(x.w)) {
                    drow[p.left..p.left + x.w].copy_from_slice(srow);
                }
            }
        }
        Ok(PaddedPlanes { data, hp, wp })
    }
}

/// The depthwise output of one group (intermediate channel `k` = input channel `k / mult`
/// filtered by `filters[k]`) from padded planes, produced block by block in packed layout.
pub(crate) struct PaddedDepthwiseB<'a> {
    /// The group's padded planes, followed by anything (later groups' planes) and the margin.
    xp: &'a [f32],
    hp: usize,
    wp: usize,
    /// The group's depthwise filters, K² values per intermediate channel.
    filters: &'a [f32],
    mult: usize,
    /// Intermediate channels (planes × mult).
    channels: usize,
    /// Offset of every tap in a padded plane (`ky·dh·wp + kx·dw`).
    shifts: Vec<usize>,
    ho: usize,
    wo: usize,
    /// Vertical stride.
    sh: usize,
    kh: usize,
    kw: usize,
    /// Horizontal dilation.
    dw: usize,
}

impl<'a> PaddedDepthwiseB<'a> {
    /// The source for `planes` input channels at the start of `xp` (padded as `hp × wp`, with the
    /// margin somewhere after them), or `None` when the geometry is not the horizontal-stride-1
    /// case this source handles or the buffers are too short for it.
    pub fn new(
        xp: &'a [f32],
        (hp, wp): (usize, usize),
        planes: usize,
        filters: &'a [f32],
        mult: usize,
        g: &PlaneGeom,
    ) -> Option<Self> {
        let (dh, dw) = g.dilation;
        let k2 = g.kh * g.kw;
        // Last input row / column any output pixel reads (relative to the padded plane).
        let reach_y = (g.ho.checked_sub(1)?)
            .checked_mul(g.stride.0)?
            .checked_add(g.kh.checked_sub(1)?.checked_mul(dh)?)?;
        let reach_x = g.wo.checked_sub(1)?.checked_add(g.kw.checked_sub(1)?.checked_mul(dw)?)?;
        let fits = g.stride.1 == 1
            && mult > 0
            && k2 > 0
            && reach_y < hp
            && reach_x < wp
            && xp.len() >= planes.checked_mul(hp.checked_mul(wp)?)?.checked_add(MARGIN)?
            && filters.len() >= planes.checked_mul(mult)?.checked_mul(k2)?;
        if !fits {
            return None;
        }
        let shifts = (0..k2).map(|t| (t / g.kw) * dh * wp + (t % g.kw) * dw).collect();
        Some(PaddedDepthwiseB {
            xp,
            hp,
            wp,
            filters,
            mult,
            channels: planes * mult,
            shifts,
            ho: g.ho,
            wo: g.wo,
            sh: g.stride.0,
            kh: g.kh,
            kw: g.kw,
            dw,
        })
    }

    /// Depthwise outputs of intermediate channel `k` for pixels `j0..j0 + nc` into
    /// `buf[FRONT..FRONT + nc]` (other slots of `buf` may be overwritten).
    #[inline(always)]
    fn channel<const KH: usize, const KW: usize>(&self, k: usize, j0: usize, nc: usize, buf: &mut [f32]) {
        let nt = self.shifts.len();
        let plane = (k / self.mult) * self.hp * self.wp;
        let Some(filt) = self.filters.get(k * nt..(k + 1) * nt) else { return };
        let weights = Weights::<KH, KW>::new(filt);
        let rs = self.shifts.get(usize::from(KH > 1) * KW).copied().unwrap_or(0);
        let (oy0, oy1) = (j0 / self.wo, (j0 + nc - 1) / self.wo + 1);
        for oy in oy0..oy1.min(self.ho) {
            let row_j = oy * self.wo;
            let a = j0.max(row_j) - row_j;
            let b = (j0 + nc).min(row_j + self.wo) - row_j;
            // Buffer slot of pixel (oy, ox) is FRONT + row_j + ox − j0 (never below 0 for the
            // chunks below: each covers at least one pixel ≥ j0 and starts ≤ 7 before it).
            let src = plane + oy * self.sh * self.wp;
            let run = |ox: usize, buf: &mut [f32]| {
                let at = FRONT + row_j + ox - j0;
                if let Some(out) = buf.get_mut(at..at + LANES) {
                    // SAFETY: `new` checked that every tap of every pixel (oy < ho, ox < wo) lies
                    // in the planes and that MARGIN ≥ 7 values follow them, which covers the
                    // lanes a chunk computes past ox (ox ≤ wo − 1 when a chunk starts at a
                    // pixel of the segment, else the chunk ends at pixel b − 1 < wo).
                    unsafe { weights.chunk(self.xp.as_ptr().add(src + ox), rs, &self.shifts, filt, out) };
                }
            };
            if b - a >= LANES {
                let mut ox = a;
                while ox + LANES < b {
                    run(ox, buf);
                    ox += LANES;
                }
                run(b - LANES, buf);
            } else if b >= LANES {
                run(b - LANES, buf);
            } else {
                run(a, buf);
            }
        }
    }

    /// [`PaddedDepthwiseB::pack`] for a `KH × KW` filter at horizontal dilation 1 (`KW = 0`: any
    /// filter and dilation).
    #[inline(always)]
    fn pack_n<const KH: usize, const KW: usize>(
        &self,
        nr: usize,
        k0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [f32],
    ) {
        let panels = nc.div_ceil(nr);
        let width = FRONT + nc + BACK;
        let mut buf = vec![0.0f32; ROWS * width];
        for p0 in (0..kc).step_by(ROWS) {
            let rows = ROWS.min(kc - p0);
            for (i, row) in buf.chunks_exact_mut(width).take(rows).enumerate() {
                self.channel::<KH, KW>(k0 + p0 + i, j0, nc, row);
                // The last panel's columns past nc are zero.
                if let Some(tail) = row.get_mut(FRONT + nc..FRONT + panels * nr) {
                    tail.fill(0.0);
                }
            }
            match nr {
                8 => copy_rows::<8>(&buf, width, rows, dst, kc, p0, panels),
                16 => copy_rows::<16>(&buf, width, rows, dst, kc, p0, panels),
                _ => {
                    for q in 0..panels {
                        for (i, row) in buf.chunks_exact(width).take(rows).enumerate() {
                            let (Some(d), Some(s)) = (
                                dst.get_mut((q * kc + p0 + i) * nr..(q * kc + p0 + i + 1) * nr),
                                row.get(FRONT + q * nr..FRONT + (q + 1) * nr),
                            ) else {
                                continue;
                            };
                            d.copy_from_slice(s);
                        }
                    }
                }
            }
        }
    }
}

impl BSource for PaddedDepthwiseB<'_> {
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        if nc == 0 || kc == 0 || j0 + nc > self.ho * self.wo || k0 + kc > self.channels {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was just detected on this CPU.
                unsafe { pack_avx2(self, nr, k0, kc, j0, nc, dst) };
                return;
            }
        }
        pack_any(self, nr, k0, kc, j0, nc, dst)
    }
}

/// Dispatch on the filter size (3 × 3, 5 × 5 and 1 × 1 at horizontal dilation 1 get kernels of
/// their own, with constant tap offsets along the row).
#[inline(always)]
fn pack_any(b: &PaddedDepthwiseB, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
    match (b.kh, b.kw, b.dw) {
        (3, 3, 1) => b.pack_n::<3, 3>(nr, k0, kc, j0, nc, dst),
        (5, 5, 1) => b.pack_n::<5, 5>(nr, k0, kc, j0, nc, dst),
        (1, 1, _) => b.pack_n::<1, 1>(nr, k0, kc, j0, nc, dst),
        _ => b.pack_n::<0, 0>(nr, k0, kc, j0, nc, dst),
    }
}

/// [`pack_any`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2(
    b: &PaddedDepthwiseB,
    nr: usize,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    pack_any(b, nr, k0, kc, j0, nc, dst)
}

/// Rows `p0..p0 + rows` of every panel from the block buffer (`rows` rows of `width` values,
/// pixel i of the block at `FRONT + i`), panel by panel.
#[inline(always)]
fn copy_rows<const N: usize>(
    buf: &[f32],
    width: usize,
    rows: usize,
    dst: &mut [f32],
    kc: usize,
    p0: usize,
    panels: usize,
) {
    for q in 0..panels {
        let Some(block) = dst.get_mut((q * kc + p0) * N..(q * kc + p0 + rows) * N) else { return };
        for (d, row) in block.chunks_exact_mut(N).zip(buf.chunks_exact(width)) {
            let (Ok(d), Some(Ok(s))) = (
                <&mut [f32; N]>::try_from(d),
                row.get(FRONT + q * N..FRONT + (q + 1) * N).map(<&[f32; N]>::try_from),
            ) else {
                continue;
            };
            *d = *s;
        }
    }
}

/// A channel's filter prepared for its chunks: on wasm with SIMD128 and a `KH × KW` kernel
/// (`KW > 0`), the weights broadcast into vector registers once per channel.
struct Weights<const KH: usize, const KW: usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    v: [[std::arch::wasm32::v128; KW]; KH],
}

impl<const KH: usize, const KW: usize> Weights<KH, KW> {
    /// Prepares `filt` (KH·KW values when `KW > 0`).
    #[inline(always)]
    fn new(_filt: &[f32]) -> Self {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            use std::arch::wasm32::*;
            let mut v = [[f32x4_splat(0.0); KW]; KH];
            for (d, &w) in v.iter_mut().flatten().zip(_filt) {
                *d = f32x4_splat(w);
            }
            Weights { v }
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        Weights {}
    }

    /// `out[l] = Σ_taps w · src[offset + l]` for 8 lanes, taps in order from 0 (the same
    /// arithmetic on every path). With `KW > 0` tap (ky, kx) is at `ky·rs + kx`; otherwise
    /// tap t is at `shifts[t]` with weight `w[t]`.
    ///
    /// # Safety
    /// `src` must be readable at every tap's offset + 0..8.
    #[inline(always)]
    unsafe fn chunk(&self, src: *const f32, rs: usize, shifts: &[usize], w: &[f32], out: &mut [f32]) {
        let Ok(out) = <&mut [f32; LANES]>::try_from(out) else { return };
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if KW > 0 {
            use std::arch::wasm32::*;
            let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
            for (ky, wrow) in self.v.iter().enumerate() {
                for (kx, wv) in wrow.iter().enumerate() {
                    // SAFETY: forwarded from the caller (8 values readable at every tap).
                    unsafe {
                        let s = src.add(ky * rs + kx);
                        a0 = f32x4_add(a0, f32x4_mul(*wv, v128_load(s as *const v128)));
                        a1 = f32x4_add(a1, f32x4_mul(*wv, v128_load(s.add(4) as *const v128)));
                    }
                }
            }
            // SAFETY: `out` holds 8 values.
            unsafe {
                v128_store(out.as_mut_ptr() as *mut v128, a0);
                v128_store(out.as_mut_ptr().add(4) as *mut v128, a1);
            }
            return;
        }
        let mut acc = [0.0f32; LANES];
        if KW > 0 {
            for (t, &wt) in w.iter().enumerate().take(KH * KW) {
                // SAFETY: forwarded from the caller.
                let s = unsafe { src.add((t / KW) * rs + t % KW) };
                for (l, a) in acc.iter_mut().enumerate() {
                    // SAFETY: forwarded from the caller.
                    *a += wt * unsafe { *s.add(l) };
                }
            }
        } else {
            for (&st, &wt) in shifts.iter().zip(w) {
                // SAFETY: forwarded from the caller.
                let s = unsafe { src.add(st) };
                for (l, a) in acc.iter_mut().enumerate() {
                    // SAFETY: forwarded from the caller.
                    *a += wt * unsafe { *s.add(l) };
                }
            }
        }
        *out = acc;
    }
}
