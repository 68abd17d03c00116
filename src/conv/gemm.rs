//! Packed, cache-blocked single-thread SGEMM `C += A·B` (BLIS loop order).
//!
//! `A` (m × k, row-major) is packed once into `MR`-row panels; `B` (k × n) is produced block by block
//! by a [`BSource`] straight into `NR`-column panels, so im2col never materialises the whole matrix.
//! The micro-kernel keeps an `MR × NR` accumulator tile in registers; it is plain Rust written so that
//! LLVM vectorises it. On x86-64 with AVX2+FMA (detected at run time) a 6 × 16 tile with fused
//! multiply-adds is used; elsewhere (including wasm, where simd128 vectorises it if enabled) a 4 × 8 tile.

/// Depth of a packed block (rows of B / columns of A kept together).
const KC: usize = 256;
/// Columns of B packed per block.
const NC: usize = 1024;
/// Rows of A walked per B block (a multiple of both tile heights).
const MC: usize = 96;

/// Produces blocks of the k × n right-hand matrix in packed panel layout.
pub(crate) trait BSource {
    /// Writes rows `k0..k0+kc` and columns `j0..j0+nc` into `dst` as `ceil(nc/NR)` panels of
    /// `kc × NR` values (`dst[(q·kc + p)·NR + jj]` = B[k0+p, j0+q·NR+jj]), zero beyond column `nc`.
    fn pack<const NR: usize>(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
}

/// A plain row-major k × n matrix with leading dimension `ld`.
pub(crate) struct MatB<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

impl BSource for MatB<'_> {
    fn pack<const NR: usize>(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        for (q, panel) in dst.chunks_exact_mut(kc * NR).take(nc.div_ceil(NR)).enumerate() {
            let js = j0 + q * NR;
            let nv = NR.min(j0 + nc - js);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &self.data[(k0 + p) * self.ld + js..][..nv];
                row[..nv].copy_from_slice(src);
                row[nv..].fill(0.0);
            }
        }
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
    fn pack<const NR: usize>(&self, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        // Top-left input coordinate of every output pixel of the block (may be negative).
        let base: Vec<(isize, isize)> = (j0..j0 + nc)
            .map(|j| {
                let (oy, ox) = (j / self.wo, j % self.wo);
                (
                    (oy * self.stride.0) as isize - self.pad.0 as isize,
                    (ox * self.stride.1) as isize - self.pad.1 as isize,
                )
            })
            .collect();
        let (h, w) = (self.h as isize, self.w as isize);
        for p in 0..kc {
            let k = k0 + p;
            let (ci, ky, kx) = (k / (self.kh * self.kw), (k / self.kw) % self.kh, k % self.kw);
            let plane = &self.x[ci * self.h * self.w..][..self.h * self.w];
            let (dy, dx) = ((ky * self.dilation.0) as isize, (kx * self.dilation.1) as isize);
            for (q, cols) in base.chunks(NR).enumerate() {
                let row = &mut dst[(q * kc + p) * NR..][..NR];
                for (d, &(by, bx)) in row.iter_mut().zip(cols) {
                    let (iy, ix) = (by + dy, bx + dx);
                    *d = if iy >= 0 && iy < h && ix >= 0 && ix < w {
                        plane[(iy * w + ix) as usize]
                    } else {
                        0.0
                    };
                }
                row[cols.len()..].fill(0.0);
            }
        }
    }
}

/// One multiply-add flavour: separate multiply and add, or a fused multiply-add.
trait Madd {
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

/// `a·b + c` with two roundings (vectorises on any target).
struct Plain;
impl Madd for Plain {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `fma(a, b, c)`: only used where the FMA instruction is enabled (otherwise it is a libm call).
#[cfg(target_arch = "x86_64")]
struct Fused;
#[cfg(target_arch = "x86_64")]
impl Madd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// `C[..mv, ..nv] += Apanel · Bpanel` for one MR × NR tile; `a` is kc × MR, `b` is kc × NR.
#[inline(always)]
fn micro<const MR: usize, const NR: usize, F: Madd>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    mv: usize,
    nv: usize,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let (Ok(ap), Ok(bp)) = (<&[f32; MR]>::try_from(ap), <&[f32; NR]>::try_from(bp)) else {
            continue;
        };
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = F::madd(ap[i], bp[j], acc[i][j]);
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate().take(mv) {
        let row = &mut c[i * ldc..][..nv];
        for (r, v) in row.iter_mut().zip(acc_row) {
            *r += v;
        }
    }
}

/// Packs all of A (m × k row-major) as: for each KC block starting at k0 (depth kc), `ceil(m/MR)`
/// panels of kc × MR at `mp·k0 + i·kc·MR` (mp = m rounded up to MR), zero-padded rows.
fn pack_a<const MR: usize>(m: usize, k: usize, a: &[f32]) -> Vec<f32> {
    let mp = m.div_ceil(MR) * MR;
    let mut out = vec![0.0f32; mp * k];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let block = &mut out[mp * k0..][..mp * kc];
        for (i, panel) in block.chunks_exact_mut(kc * MR).enumerate() {
            for ii in 0..MR.min(m - i * MR) {
                let src = &a[(i * MR + ii) * k + k0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * MR + ii] = v;
                }
            }
        }
    }
    out
}

/// The blocked driver for one tile shape.
#[inline(always)]
fn gemm_impl<const MR: usize, const NR: usize, F: Madd, B: BSource>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
) {
    let mp = m.div_ceil(MR) * MR;
    let apack = pack_a::<MR>(m, k, a);
    let mut bpack = vec![0.0f32; KC * NC.min(n).div_ceil(NR) * NR];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            b.pack::<NR>(pc, kc, jc, nc, &mut bpack);
            let ablock = &apack[mp * pc..][..mp * kc];
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                for jr in (0..nc).step_by(NR) {
                    let nv = NR.min(nc - jr);
                    let bpanel = &bpack[(jr / NR) * kc * NR..][..kc * NR];
                    for ir in (ic..ic + mc).step_by(MR) {
                        let mv = MR.min(m - ir);
                        let apanel = &ablock[(ir / MR) * kc * MR..][..kc * MR];
                        micro::<MR, NR, F>(apanel, bpanel, &mut c[ir * ldc + jc + jr..], ldc, mv, nv);
                    }
                }
            }
        }
    }
}

/// AVX2 + FMA instantiation (6 × 16 tile).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2<B: BSource>(m: usize, k: usize, n: usize, a: &[f32], b: &B, c: &mut [f32], ldc: usize) {
    gemm_impl::<6, 16, Fused, B>(m, k, n, a, b, c, ldc)
}

/// `C += A·B`: A is m × k row-major, B is k × n from `b`, C is m × n with leading dimension `ldc`.
/// The caller guarantees the slice sizes (`a.len() ≥ m·k`, `c.len() ≥ (m−1)·ldc + n`).
pub(crate) fn gemm<B: BSource>(m: usize, k: usize, n: usize, a: &[f32], b: &B, c: &mut [f32], ldc: usize) {
    if m == 0 || k == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            unsafe { gemm_avx2(m, k, n, a, b, c, ldc) };
            return;
        }
    }
    gemm_impl::<4, 8, Plain, B>(m, k, n, a, b, c, ldc)
}

/// The portable path regardless of the CPU (so tests cover it on AVX2 machines too).
#[cfg(test)]
pub(crate) fn gemm_portable<B: BSource>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || k == 0 || n == 0 {
        return;
    }
    gemm_impl::<4, 8, Plain, B>(m, k, n, a, b, c, ldc)
}
