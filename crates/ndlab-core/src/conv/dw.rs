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

/// The body of [`plane_acc`]: the register-blocked row kernel at horizontal stride 1, the per-tap
/// loops otherwise.
#[inline(always)]
fn plane_acc_impl(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
    if g.stride.1 == 1 && g.kh <= MAX_SIDE && g.kw <= MAX_SIDE {
        plane_acc_unit(inp, filter, out, g, rows)
    } else {
        plane_acc_taps(inp, filter, out, g, rows)
    }
}

/// Largest filter side the row kernel handles; larger filters take the per-tap loops.
const MAX_SIDE: usize = 16;
/// Output columns accumulated in registers at once by the row kernel (narrow blocks).
const LANES: usize = 8;
/// Columns of a wide block: four independent 8-lane accumulator chains.
const WIDE: usize = 32;

/// Like [`block`] over `LANES` columns from `ox`, but only lanes `from..` are added to the output.
#[inline(always)]
fn tail_block(taps: &[(&[f32], &[f32])], ox: usize, from: usize, dw: usize, pad: usize, orow: &mut [f32]) {
    let mut acc = [0.0f32; LANES];
    for &(irow, frow) in taps {
        for (kx, &wt) in frow.iter().enumerate() {
            let s = ox + kx * dw - pad;
            if let Ok(src) = <&[f32; LANES]>::try_from(&irow[s..s + LANES]) {
                for l in 0..LANES {
                    acc[l] += wt * src[l];
                }
            }
        }
    }
    for (o, a) in orow[ox + from..ox + LANES].iter_mut().zip(&acc[from..]) {
        *o += a;
    }
}

/// `orow[ox..ox + L] += Σ_taps w · irow[ox + kx·dw − pad ..]`, all taps accumulated in registers.
/// Every tap must be inside the image for these columns.
#[inline(always)]
fn block<const L: usize>(taps: &[(&[f32], &[f32])], ox: usize, dw: usize, pad: usize, orow: &mut [f32]) {
    let Ok(o) = <&mut [f32; L]>::try_from(&mut orow[ox..ox + L]) else { return };
    let mut acc = *o;
    for &(irow, frow) in taps {
        for (kx, &wt) in frow.iter().enumerate() {
            let s = ox + kx * dw - pad;
            if let Ok(src) = <&[f32; L]>::try_from(&irow[s..s + L]) {
                for l in 0..L {
                    acc[l] += wt * src[l];
                }
            }
        }
    }
    *o = acc;
}

/// Horizontal stride 1: for every output row, the columns where every tap is inside the image
/// are computed `LANES` at a time with all taps accumulated in registers (one load and one store
/// of the output per block instead of one per tap); the border columns take the per-tap loops.
#[inline(always)]
fn plane_acc_unit(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
    let (sh, dh, dw) = (g.stride.0, g.dilation.0, g.dilation.1);
    let mut ranges = [(0usize, 0usize); MAX_SIDE];
    for (kx, r) in ranges.iter_mut().enumerate().take(g.kw) {
        *r = valid_range(kx * dw, g.pad.1, 1, g.w, g.wo);
    }
    let ranges = &ranges[..g.kw];
    // Columns where every tap is inside: [lo_all, hi_all).
    let lo_all = ranges.iter().map(|r| r.0).max().unwrap_or(0);
    let hi_all = ranges.iter().map(|r| r.1).min().unwrap_or(0).max(lo_all);
    // Wide blocks (independent accumulator chains hide the add latency), then narrow ones.
    let wide = (hi_all - lo_all) / WIDE;
    let narrow = (hi_all - lo_all - wide * WIDE) / LANES;
    let mut vec_end = lo_all + wide * WIDE + narrow * LANES;
    // The leftover interior columns as one overlapping block ending at hi_all (only its new
    // lanes are added), when the interior is at least one block wide.
    let tail =
        (vec_end < hi_all && hi_all - lo_all >= LANES).then(|| (hi_all - LANES, LANES - (hi_all - vec_end)));
    if tail.is_some() {
        vec_end = hi_all;
    }
    // (input row, filter row) of the taps that fall inside the image, per output row.
    let mut taps: [(&[f32], &[f32]); MAX_SIDE] = [(&[], &[]); MAX_SIDE];
    for (oy, orow) in rows.take_while(|&oy| oy < g.ho).zip(out.chunks_exact_mut(g.wo)) {
        let mut nt = 0;
        for ky in 0..g.kh {
            let iy = oy * sh + ky * dh;
            if iy < g.pad.0 || iy - g.pad.0 >= g.h {
                continue;
            }
            taps[nt] = (&inp[(iy - g.pad.0) * g.w..][..g.w], &filter[ky * g.kw..][..g.kw]);
            nt += 1;
        }
        let taps = &taps[..nt];
        for b in 0..wide {
            block::<WIDE>(taps, lo_all + b * WIDE, dw, g.pad.1, orow);
        }
        for b in 0..narrow {
            block::<LANES>(taps, lo_all + wide * WIDE + b * LANES, dw, g.pad.1, orow);
        }
        if let Some((start, from)) = tail {
            tail_block(taps, start, from, dw, g.pad.1, orow);
        }
        // Border (and leftover) columns, tap by tap.
        for &(irow, frow) in taps {
            for (kx, (&wt, &(lo, hi))) in frow.iter().zip(ranges).enumerate() {
                for (a, b) in [(lo, lo_all.min(hi)), (vec_end.max(lo), hi)] {
                    if a >= b {
                        continue;
                    }
                    let start = a + kx * dw - g.pad.1;
                    for (o, &i) in orow[a..b].iter_mut().zip(&irow[start..start + (b - a)]) {
                        *o += wt * i;
                    }
                }
            }
        }
    }
}

/// Any stride: for every output row and tap, `out += w · in` over the tap's valid columns.
#[inline(always)]
fn plane_acc_taps(inp: &[f32], filter: &[f32], out: &mut [f32], g: &PlaneGeom, rows: Range<usize>) {
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
