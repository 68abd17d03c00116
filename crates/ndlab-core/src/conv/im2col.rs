//! Implicit im2col over a zero-padded copy of the input, for convs with horizontal stride 1.
//!
//! With the padding materialised, row `(ci, ky, kx)` of the im2col matrix is, along each output
//! row, a contiguous run of the padded plane shifted by `ky·dh·Wp + kx·dw`: packing a B block is
//! then plain copies (one 8-value copy per panel row when the panel lies inside one output row),
//! with no per-value bounds logic.

use super::gemm::{copy_panel, BSource};
use crate::layer::ConvGeometry;

/// The input of a conv, zero-padded on all four sides (channels of `hp × wp`).
pub(crate) struct Padded {
    pub data: Vec<f32>,
    pub hp: usize,
    pub wp: usize,
}

impl Padded {
    /// Copies `c` planes of `h × w` from `x` into planes of `(top + h + bottom) × (left + w + right)`.
    pub fn new(x: &[f32], c: usize, h: usize, w: usize, geom: &ConvGeometry) -> Padded {
        let p = geom.padding;
        let (hp, wp) = (h + p.top + p.bottom, w + p.left + p.right);
        let mut data = vec![0.0f32; c * hp * wp];
        for (dst, src) in data.chunks_exact_mut(hp * wp).zip(x.chunks_exact(h * w)) {
            for (drow, srow) in dst[p.top * wp..].chunks_exact_mut(wp).zip(src.chunks_exact(w)) {
                drow[p.left..p.left + w].copy_from_slice(srow);
            }
        }
        Padded { data, hp, wp }
    }
}

/// The im2col matrix of one group over padded planes (horizontal stride 1): row
/// `(ci·kh + ky)·kw + kx`, column `oy·wo + ox` holds `xp[ci, oy·sh + ky·dh, ox + kx·dw]`.
pub(crate) struct PaddedIm2colB<'a> {
    /// The group's padded input channels, each `hp × wp`.
    pub xp: &'a [f32],
    pub hp: usize,
    pub wp: usize,
    pub kh: usize,
    pub kw: usize,
    pub wo: usize,
    /// Vertical stride.
    pub sh: usize,
    pub dilation: (usize, usize),
}

/// One contiguous piece of a panel row: `len` values to `dst` (within the panel row) from the
/// padded plane at `src` (before the row's tap shift).
#[derive(Clone, Copy)]
struct Seg {
    dst: usize,
    src: usize,
    len: usize,
}

impl PaddedIm2colB<'_> {
    /// Offset of im2col row `k` in `xp`.
    #[inline]
    fn shift(&self, k: usize) -> usize {
        let (ci, ky, kx) = (k / (self.kh * self.kw), (k / self.kw) % self.kh, k % self.kw);
        ci * self.hp * self.wp + ky * self.dilation.0 * self.wp + kx * self.dilation.1
    }

    /// The pieces of the panel covering columns `j..j + n` (split where output rows end).
    fn segments(&self, j: usize, n: usize, out: &mut Vec<Seg>) {
        out.clear();
        let mut d = 0;
        while d < n {
            let (oy, ox) = ((j + d) / self.wo, (j + d) % self.wo);
            let len = (self.wo - ox).min(n - d);
            out.push(Seg { dst: d, src: oy * self.sh * self.wp + ox, len });
            d += len;
        }
    }
}

impl BSource for PaddedIm2colB<'_> {
    fn pack(&self, nr: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let panels = nc.div_ceil(nr);
        // Panels inside one output row take the single-copy path; the others keep their pieces.
        let mut whole: Vec<(usize, usize)> = Vec::with_capacity(panels);
        let mut split: Vec<(usize, Vec<Seg>)> = Vec::new();
        let mut segs = Vec::new();
        for q in 0..panels {
            let n = nr.min(nc - q * nr);
            self.segments(j0 + q * nr, n, &mut segs);
            match segs.as_slice() {
                [s] if s.len == nr => whole.push((q, s.src)),
                _ => split.push((q, segs.clone())),
            }
        }
        // Shift of every row of the block, then panel by panel (sequential writes; the few
        // hundred source rows a panel reads stay in L1 for the next panel).
        let plane = self.xp.len();
        let shifts: Vec<usize> = (k0..k0 + kc).map(|k| self.shift(k).min(plane)).collect();
        for &(q, s) in &whole {
            let panel = &mut dst[q * kc * nr..][..kc * nr];
            match nr {
                8 => copy_panel::<8>(&shifts, &self.xp[s.min(plane)..], panel),
                16 => copy_panel::<16>(&shifts, &self.xp[s.min(plane)..], panel),
                _ => {
                    for (row, &sh) in panel.chunks_exact_mut(nr).zip(&shifts) {
                        row.copy_from_slice(&self.xp[sh + s..][..nr]);
                    }
                }
            }
        }
        for (q, pieces) in &split {
            for (p, &sh) in shifts.iter().enumerate() {
                let row = &mut dst[(q * kc + p) * nr..][..nr];
                row.fill(0.0);
                for s in pieces {
                    row[s.dst..s.dst + s.len].copy_from_slice(&self.xp[sh + s.src..][..s.len]);
                }
            }
        }
    }
}
