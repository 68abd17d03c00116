//! The right-hand sides of the GEMM: a plain matrix, im2col of an input and the depthwise
//! output of the fused DW→PW, each packed block by block into NR-column panels.

use super::super::dw::{plane_acc, valid_range, PlaneGeom};

/// Produces blocks of the k × n right-hand matrix in packed panel layout.
pub(crate) trait BSource {
    /// Writes rows `k0..k0+kc` and columns `j0..j0+nc` into `dst` as `ceil(nc/nr)` panels of
    /// `kc × nr` values (`dst[(q·kc + p)·nr + jj]` = B[k0+p, j0+q·nr+jj]), zero beyond column `nc`.
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
}

/// A plain row-major k × n matrix with leading dimension `ld`.
pub(crate) struct MatB<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

impl BSource for MatB<'_> {
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        // Panel by panel (sequential writes; the kc source rows a panel touches stay in L1 for
        // the next one).
        let starts: Vec<usize> = (k0..k0 + kc).map(|k| k * self.ld).collect();
        for (q, panel) in dst.chunks_exact_mut(kc * nr).take(nc.div_ceil(nr)).enumerate() {
            let js = j0 + q * nr;
            let nv = nr.min(j0 + nc - js);
            let src = self.data.get(js..).unwrap_or(&[]);
            match nr {
                8 if nv == 8 => copy_panel::<8>(&starts, src, panel),
                16 if nv == 16 => copy_panel::<16>(&starts, src, panel),
                _ => {
                    for (row, &st) in panel.chunks_exact_mut(nr).zip(&starts) {
                        row[..nv].copy_from_slice(&src[st..st + nv]);
                        row[nv..].fill(0.0);
                    }
                }
            }
        }
    }
}

/// One whole panel: row `p` is the `N` values at `src[starts[p]..]` (a fixed-size copy, so it
/// compiles to vector moves rather than a `memcpy` call).
#[inline(always)]
pub(crate) fn copy_panel<const N: usize>(starts: &[usize], src: &[f32], panel: &mut [f32]) {
    for (row, &st) in panel.chunks_exact_mut(N).zip(starts) {
        let (Ok(d), Some(Ok(v))) =
            (<&mut [f32; N]>::try_from(row), src.get(st..st + N).map(<&[f32; N]>::try_from))
        else {
            continue;
        };
        *d = *v;
    }
}

/// The implicit im2col matrix of one group of a conv input: row `(ci·kh + ky)·kw + kx`,
/// column `oy·wo + ox` holds `x[ci, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw]` (0 outside).
pub(crate) struct Im2colB<'a> {
    /// The group's input channels, each h × w.
    pub x: &'a [f32],
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub wo: usize,
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    /// (top, left) padding.
    pub pad: (usize, usize),
}

impl BSource for Im2colB<'_> {
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        // Output pixel (oy, ox) of the first column of every panel.
        let starts: Vec<(usize, usize)> =
            (0..nc.div_ceil(nr)).map(|q| ((j0 + q * nr) / self.wo, (j0 + q * nr) % self.wo)).collect();
        let hw = self.h * self.w;
        for p in 0..kc {
            let k = k0 + p;
            let (ci, ky, kx) = (k / (self.kh * self.kw), (k / self.kw) % self.kh, k % self.kw);
            let plane = &self.x[ci * hw..][..hw];
            let tap = Tap { plane, dy: ky * self.dilation.0, dx: kx * self.dilation.1 };
            let cols = valid_range(tap.dx, self.pad.1, self.stride.1, self.w, self.wo);
            for (q, &(oy, ox)) in starts.iter().enumerate() {
                let row = &mut dst[(q * kc + p) * nr..][..nr];
                let n = nr.min(nc - q * nr);
                self.fill_panel_row(&tap, cols, (oy, ox), &mut row[..n]);
                row[n..].fill(0.0);
            }
        }
    }
}

/// One im2col row: an input plane and the tap's offset.
struct Tap<'a> {
    plane: &'a [f32],
    dy: usize,
    dx: usize,
}

impl Im2colB<'_> {
    /// Fills `out` with the tap's values for consecutive output pixels starting at `(oy, ox)`,
    /// output row by output row; `cols` is the range of output columns inside the image.
    #[inline]
    fn fill_panel_row(
        &self,
        tap: &Tap,
        cols: (usize, usize),
        (mut oy, mut ox): (usize, usize),
        out: &mut [f32],
    ) {
        let (sh, sw) = self.stride;
        let mut pos = 0;
        while pos < out.len() {
            let len = (self.wo - ox).min(out.len() - pos);
            let seg = &mut out[pos..pos + len];
            let iy = oy * sh + tap.dy;
            if iy < self.pad.0 || iy - self.pad.0 >= self.h {
                seg.fill(0.0);
            } else {
                let irow = &tap.plane[(iy - self.pad.0) * self.w..][..self.w];
                let a = cols.0.clamp(ox, ox + len);
                let b = cols.1.clamp(a, ox + len);
                seg[..a - ox].fill(0.0);
                if a < b {
                    let start = a * sw + tap.dx - self.pad.1;
                    let dst = &mut seg[a - ox..b - ox];
                    if sw == 1 {
                        dst.copy_from_slice(&irow[start..start + (b - a)]);
                    } else {
                        for (d, s) in dst.iter_mut().zip(irow[start..].iter().step_by(sw)) {
                            *d = *s;
                        }
                    }
                }
                seg[b - ox..].fill(0.0);
            }
            pos += len;
            ox = 0;
            oy += 1;
        }
    }
}

/// The depthwise output of one group (intermediate channel `k` = input channel `k / mult`
/// filtered by `filters[k]`), computed block by block while packing: the fused DW→PW path never
/// materialises the whole C·T × Ho·Wo intermediate.
pub(crate) struct DepthwiseB<'a> {
    /// The group's input channels, each h × w.
    pub x: &'a [f32],
    /// The group's depthwise filters, K² values per intermediate channel.
    pub filters: &'a [f32],
    pub mult: usize,
    pub geom: PlaneGeom,
}

impl BSource for DepthwiseB<'_> {
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let g = &self.geom;
        let (hw, k2) = (g.h * g.w, g.kh * g.kw);
        // Output rows covering pixels j0..j0+nc, computed into `rows` then packed.
        let (oy0, oy1) = (j0 / g.wo, (j0 + nc - 1) / g.wo + 1);
        let mut rows = vec![0.0f32; (oy1 - oy0) * g.wo];
        let skip = j0 - oy0 * g.wo;
        for p in 0..kc {
            let k = k0 + p;
            rows.fill(0.0);
            let plane = &self.x[(k / self.mult) * hw..][..hw];
            plane_acc(plane, &self.filters[k * k2..][..k2], &mut rows, g, oy0..oy1);
            let src = &rows[skip..skip + nc];
            match nr {
                8 => scatter_row::<8>(src, dst, kc, p),
                16 => scatter_row::<16>(src, dst, kc, p),
                _ => {
                    for (q, cols) in src.chunks(nr).enumerate() {
                        let row = &mut dst[(q * kc + p) * nr..][..nr];
                        row[..cols.len()].copy_from_slice(cols);
                        row[cols.len()..].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Row `p` of every panel from one contiguous row of B (`N` values per panel, fixed-size copies;
/// the last panel zero-padded).
#[inline(always)]
fn scatter_row<const N: usize>(src: &[f32], dst: &mut [f32], kc: usize, p: usize) {
    let mut chunks = src.chunks_exact(N);
    for (q, cols) in chunks.by_ref().enumerate() {
        if let (Ok(d), Ok(v)) =
            (<&mut [f32; N]>::try_from(&mut dst[(q * kc + p) * N..][..N]), <&[f32; N]>::try_from(cols))
        {
            *d = *v;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let row = &mut dst[((src.len() / N) * kc + p) * N..][..N];
        row[..rest.len()].copy_from_slice(rest);
        row[rest.len()..].fill(0.0);
    }
}
