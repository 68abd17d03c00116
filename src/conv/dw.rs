//! Depthwise plane kernel: one kh × kw filter over one channel, accumulated into an output plane.
//!
//! For every output row and every tap, the range of output columns whose input column falls inside
//! the image is computed in closed form, so the inner loop is a bounds-check-free `out += w · in`
//! over contiguous output (and contiguous input at horizontal stride 1); the zero-padded borders are
//! simply the parts of the row outside that range.

use std::ops::Range;

/// Sizes and geometry shared by every plane of one depthwise op.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaneGeom {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    /// (top, left) padding.
    pub pad: (usize, usize),
}

/// Output columns `lo..hi` whose input column `ox·sw + off − pad` lies in `0..w`.
#[inline]
pub(crate) fn valid_range(off: usize, pad: usize, stride: usize, w: usize, wo: usize) -> (usize, usize) {
    let lo = if off >= pad { 0 } else { (pad - off).div_ceil(stride) };
    if w + pad < off + 1 {
        return (0, 0);
    }
    let hi = ((w - 1 + pad - off) / stride + 1).min(wo);
    (lo.min(hi), hi)
}

/// `out += filter ⋆ inp (h × w)` with zero padding, for output rows `rows` (`out` holds those
/// rows only, `rows.len() × wo` values; `rows.end ≤ ho`). Uses 256-bit vectors on x86-64 CPUs
/// with AVX2 (detected at run time; the arithmetic, unfused multiply then add, is the same).
pub(crate) fn plane_acc(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was just detected on this CPU.
            unsafe { plane_acc_avx2(inp, filter, out, g, rows) };
            return;
        }
    }
    plane_acc_impl(inp, filter, out, g, rows)
}

/// [`plane_acc`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plane_acc_avx2(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
    plane_acc_impl(inp, filter, out, g, rows)
}

/// The body of [`plane_acc`].
#[inline(always)]
fn plane_acc_impl(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
    let (sh, sw) = g.stride;
    let (dh, dw) = g.dilation;
    let ranges: Vec<(usize, usize)> =
        (0..g.kw).map(|kx| valid_range(kx * dw, g.pad.1, sw, g.w, g.wo)).collect();
    for (oy, orow) in rows.take_while(|&oy| oy < g.ho).zip(out.chunks_exact_mut(g.wo)) {
        for ky in 0..g.kh {
            let iy = oy * sh + ky * dh;
            if iy < g.pad.0 || iy - g.pad.0 >= g.h {
                continue;
            }
            let irow = &inp[(iy - g.pad.0) * g.w..][..g.w];
            let taps = &filter[ky * g.kw..][..g.kw];
            for (kx, (&wt, &(lo, hi))) in taps.iter().zip(&ranges).enumerate() {
                if lo >= hi {
                    continue;
                }
                let start = lo * sw + kx * dw - g.pad.1;
                let o = &mut orow[lo..hi];
                if sw == 1 {
                    for (o, &i) in o.iter_mut().zip(&irow[start..start + (hi - lo)]) {
                        *o += wt * i;
                    }
                } else {
                    for (o, &i) in o.iter_mut().zip(irow[start..].iter().step_by(sw)) {
                        *o += wt * i;
                    }
                }
            }
        }
    }
}
