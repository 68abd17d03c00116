//! Packed, cache-blocked single-thread SGEMM `C += A·B` (BLIS loop order).
//!
//! `A` (m × k, row-major) is packed once into MR-row panels; `B` (k × n) is produced block by block
//! by a [`BSource`] straight into NR-column panels, so im2col never materialises the whole matrix.
//! The micro-kernel keeps an MR × NR accumulator tile in registers and adds it to C itself:
//! on x86-64 with AVX2+FMA (detected at run time) a 6 × 16 tile of twelve ymm registers with
//! fused multiply-adds; on wasm built with `simd128` a 4 × 8 tile of v128 registers (a function of
//! its own, so that V8 allocates registers for that loop alone); elsewhere a plain-Rust 4 × 8 tile.
//! Packing copies fixed-size rows (8 or 16 values), never calling `memcpy` per panel row.

mod sources;

pub(crate) use sources::{copy_panel, BSource, DepthwiseB, Im2colB, MatB};

/// Largest depth of a packed block (rows of B / columns of A kept together), for the 4 × 8
/// tiles (wasm, portable): B and A panels of 16 + 8 KB stay in L1, C is swept fewer times
/// (measured in V8: 2–7 % faster than 384).
const KC: usize = 512;
/// Columns of B packed per block (a KC × NC block of 1 MB stays in L2).
const NC: usize = 512;
/// Rows of A walked per B block (a multiple of every tile height: 4, 5, 6).
const MC: usize = 120;

/// Largest tile (MR·NR) of any micro-kernel.
const TILE: usize = 96;

/// Where a micro-kernel adds its tile: `c[i·ldc + j] += tile[i][j]` for i < mv, j < nv.
struct CTile<'a> {
    c: &'a mut [f32],
    ldc: usize,
    mv: usize,
    nv: usize,
}

impl CTile<'_> {
    /// True when the whole MR × NR tile is valid and inside `c` (the kernel may then add its
    /// accumulators to C with full-width vector loads and stores).
    #[inline(always)]
    fn full(&self, mr: usize, nr: usize) -> bool {
        self.mv == mr && self.nv == nr && self.c.len() >= (mr - 1) * self.ldc + nr
    }

    /// `C[..mv, ..nv] += tile` (tile rows of `nr` values): the edge-tile path.
    #[inline(always)]
    fn add(&mut self, tile: &[f32; TILE], nr: usize) {
        for (i, t) in tile.chunks_exact(nr).take(self.mv).enumerate() {
            for (r, v) in self.c[i * self.ldc..][..self.nv].iter_mut().zip(t) {
                *r += v;
            }
        }
    }
}

/// A register-blocked micro-kernel adding one MR × NR tile of `Apanel · Bpanel` to C.
trait Micro {
    /// Tile height (rows of A per panel).
    const MR: usize;
    /// Tile width (columns of B per panel).
    const NR: usize;
    /// Largest k-block depth.
    const KC: usize = KC;
    /// Columns of B per packed block.
    const NC: usize = NC;
    /// `C[i][j] += Σ_p a[p·MR + i] · b[p·NR + j]` for p < kc. Does nothing if a slice is short.
    ///
    /// # Safety
    /// The CPU must support the instructions the implementation is compiled for.
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], c: CTile);
}

/// Portable 4 × 8 tile in plain Rust (LLVM vectorises what the target allows). Unused by a wasm
/// build with SIMD128, which has its own tile.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
struct Portable;
impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 8;
    #[inline(always)]
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], mut c: CTile) {
        let mut acc = [[0.0f32; 8]; 4];
        for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(8)).take(kc) {
            let (Ok(ap), Ok(bp)) = (<&[f32; 4]>::try_from(ap), <&[f32; 8]>::try_from(bp)) else {
                continue;
            };
            for (row, &av) in acc.iter_mut().zip(ap) {
                for (r, &bv) in row.iter_mut().zip(bp) {
                    *r += av * bv;
                }
            }
        }
        let mut tile = [0.0f32; TILE];
        for (o, v) in tile.iter_mut().zip(acc.iter().flatten()) {
            *o = *v;
        }
        c.add(&tile, 8);
    }
}

/// wasm simd128 4 × 8 tile (compiled only when the `simd128` target feature is on): eight v128
/// accumulators, two B vectors, one broadcast A value and one product (V8 allocates 15 SIMD
/// registers on x86-64).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
struct Simd128;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl Micro for Simd128 {
    const MR: usize = 4;
    const NR: usize = 8;
    #[inline(always)]
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], mut c: CTile) {
        if a.len() < kc * 4 || b.len() < kc * 8 {
            return;
        }
        if c.full(4, 8) {
            // SAFETY: the panels hold kc steps (checked above) and C has 4 rows of 8 at `ldc`.
            unsafe { simd128_4x8(kc, a.as_ptr(), b.as_ptr(), c.c.as_mut_ptr(), c.ldc) };
            return;
        }
        let mut tile = [0.0f32; TILE];
        // SAFETY: as above, with the 4 × 8 tile buffer as C.
        unsafe { simd128_4x8(kc, a.as_ptr(), b.as_ptr(), tile.as_mut_ptr(), 8) };
        c.add(&tile, 8);
    }
}

/// `dst[i·ld + j] += Σ_p a[p·4 + i] · b[p·8 + j]` for a 4 × 8 tile. A function of its own (not
/// inlined into the blocked driver) so that the engine's register allocator sees only this loop:
/// inlined, V8 kept loop bounds in stack slots and recomputed addresses from the index.
///
/// # Safety
/// `a` must hold `4·kc` values, `b` `8·kc`, and `dst` rows `0..4` of 8 values at stride `ld`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
#[inline(never)]
unsafe fn simd128_4x8(kc: usize, a: *const f32, b: *const f32, dst: *mut f32, ld: usize) {
    use std::arch::wasm32::*;
    let mut acc = [[f32x4_splat(0.0); 2]; 4];
    let (mut pa, mut pb) = (a, b);
    // SAFETY (whole body): every pointer stays inside the extents the caller guarantees: pa and
    // pb advance by 4 and 8 values per step for kc steps; dst rows i < 4, columns < 8.
    unsafe {
        for _ in 0..kc {
            let (b0, b1) = (v128_load(pb as *const v128), v128_load(pb.add(4) as *const v128));
            for (i, row) in acc.iter_mut().enumerate() {
                // One `v128.load32_splat` (a single broadcast load in the engine).
                let av = v128_load32_splat(pa.add(i) as *const u32);
                row[0] = f32x4_add(row[0], f32x4_mul(av, b0));
                row[1] = f32x4_add(row[1], f32x4_mul(av, b1));
            }
            pa = pa.add(4);
            pb = pb.add(8);
        }
        for (i, row) in acc.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                let q = dst.add(i * ld + h * 4) as *mut v128;
                v128_store(q, f32x4_add(v128_load(q), *v));
            }
        }
    }
}

/// wasm relaxed-SIMD tile of `MR` rows × `4·NV` columns (the `relaxed-simd` cargo feature only):
/// `f32x4.relaxed_madd` is one fused multiply-add on CPUs with FMA (V8 on x86-64 with FMA3,
/// arm64), so each k step issues MR·NV FP ops instead of 2·MR·NV. A module containing it does
/// not validate in engines without relaxed SIMD (Safari): the app ships it as a second worker.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
struct Relaxed<const MR: usize, const NV: usize>;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
impl<const MR: usize, const NV: usize> Micro for Relaxed<MR, NV> {
    const MR: usize = MR;
    const NR: usize = 4 * NV;
    #[inline(always)]
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], mut c: CTile) {
        if a.len() < kc * MR || b.len() < kc * 4 * NV {
            return;
        }
        if c.full(MR, 4 * NV) {
            // SAFETY: the panels hold kc steps (checked above) and C has MR rows of 4·NV at `ldc`.
            unsafe { relaxed_tile::<MR, NV>(kc, a.as_ptr(), b.as_ptr(), c.c.as_mut_ptr(), c.ldc) };
            return;
        }
        let mut tile = [0.0f32; TILE];
        // SAFETY: as above, with the MR × 4·NV tile buffer (≤ TILE values) as C.
        unsafe { relaxed_tile::<MR, NV>(kc, a.as_ptr(), b.as_ptr(), tile.as_mut_ptr(), 4 * NV) };
        c.add(&tile, 4 * NV);
    }
}

/// `dst[i·ld + j] += Σ_p a[p·MR + i] · b[p·4NV + j]` with `f32x4.relaxed_madd` (fused where the
/// CPU has FMA; otherwise a multiply and an add, like [`simd128_4x8`]). Not inlined, for the same
/// reason as [`simd128_4x8`].
///
/// # Safety
/// `a` must hold `MR·kc` values, `b` `4·NV·kc`, and `dst` rows `0..MR` of `4·NV` values at stride `ld`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
#[inline(never)]
#[target_feature(enable = "relaxed-simd")]
unsafe fn relaxed_tile<const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    dst: *mut f32,
    ld: usize,
) {
    use std::arch::wasm32::*;
    let mut acc = [[f32x4_splat(0.0); NV]; MR];
    let (mut pa, mut pb) = (a, b);
    // SAFETY (whole body): pa and pb advance by MR and 4·NV values per step for kc steps;
    // dst rows i < MR, columns < 4·NV (the caller's extents).
    unsafe {
        for _ in 0..kc {
            let mut bv = [f32x4_splat(0.0); NV];
            for (h, v) in bv.iter_mut().enumerate() {
                *v = v128_load(pb.add(4 * h) as *const v128);
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = v128_load32_splat(pa.add(i) as *const u32);
                for (r, v) in row.iter_mut().zip(&bv) {
                    *r = f32x4_relaxed_madd(av, *v, *r);
                }
            }
            pa = pa.add(MR);
            pb = pb.add(4 * NV);
        }
        for (i, row) in acc.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                let q = dst.add(i * ld + h * 4) as *mut v128;
                v128_store(q, f32x4_add(v128_load(q), *v));
            }
        }
    }
}

/// The relaxed tile the `relaxed-simd` build uses (rows, v128 columns).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
type WasmRelaxed = Relaxed<4, 2>;

/// AVX2 + FMA 6 × 16 tile: twelve ymm accumulators, two B loads and six broadcasts per step.
#[cfg(target_arch = "x86_64")]
struct Avx2;
#[cfg(target_arch = "x86_64")]
impl Micro for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    // 16-wide panels: B (24 KB) and A (9 KB) panels of depth 384 fit L1 with room to spare.
    const KC: usize = 384;
    const NC: usize = 768;
    #[inline(always)]
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], mut c: CTile) {
        use std::arch::x86_64::*;
        if a.len() < kc * 6 || b.len() < kc * 16 {
            return;
        }
        // SAFETY: the caller guarantees AVX2 and FMA; every pointer offset stays below
        // kc·6 ≤ a.len(), kc·16 ≤ b.len() (checked above), 96 = TILE, or (for a full tile)
        // 5·ldc + 16 ≤ c.len() (`full`).
        unsafe {
            let z = _mm256_setzero_ps();
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(pb);
                let b1 = _mm256_loadu_ps(pb.add(8));
                let a0 = _mm256_broadcast_ss(&*pa);
                c00 = _mm256_fmadd_ps(a0, b0, c00);
                c01 = _mm256_fmadd_ps(a0, b1, c01);
                let a1 = _mm256_broadcast_ss(&*pa.add(1));
                c10 = _mm256_fmadd_ps(a1, b0, c10);
                c11 = _mm256_fmadd_ps(a1, b1, c11);
                let a2 = _mm256_broadcast_ss(&*pa.add(2));
                c20 = _mm256_fmadd_ps(a2, b0, c20);
                c21 = _mm256_fmadd_ps(a2, b1, c21);
                let a3 = _mm256_broadcast_ss(&*pa.add(3));
                c30 = _mm256_fmadd_ps(a3, b0, c30);
                c31 = _mm256_fmadd_ps(a3, b1, c31);
                let a4 = _mm256_broadcast_ss(&*pa.add(4));
                c40 = _mm256_fmadd_ps(a4, b0, c40);
                c41 = _mm256_fmadd_ps(a4, b1, c41);
                let a5 = _mm256_broadcast_ss(&*pa.add(5));
                c50 = _mm256_fmadd_ps(a5, b0, c50);
                c51 = _mm256_fmadd_ps(a5, b1, c51);
                pa = pa.add(6);
                pb = pb.add(16);
            }
            let acc = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
            if c.full(6, 16) {
                let pc = c.c.as_mut_ptr();
                for (i, v) in acc.iter().enumerate() {
                    let q = pc.add((i / 2) * c.ldc + (i % 2) * 8);
                    _mm256_storeu_ps(q, _mm256_add_ps(_mm256_loadu_ps(q), *v));
                }
                return;
            }
            let mut tile = [0.0f32; TILE];
            for (i, v) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile.as_mut_ptr().add(i * 8), *v);
            }
            c.add(&tile, 16);
        }
    }
}

/// The depth of the k blocks: at most `kc_max`, and as even as possible (K = 512 with 384 →
/// 2 × 256, not 384 + 128: a short last block spends more of its time adding tiles to C).
fn balanced_kc(k: usize, kc_max: usize) -> usize {
    k.div_ceil(k.div_ceil(kc_max).max(1)).max(1)
}

/// Packs all of A (m × k row-major) as: for each block of depth `kcb` starting at k0 (depth
/// kc ≤ kcb), `ceil(m/mr)` panels of kc × mr at `mp·k0 + i·kc·mr` (mp = m rounded up to mr),
/// zero-padded rows.
fn pack_a(mr: usize, m: usize, k: usize, a: &[f32], kcb: usize) -> Vec<f32> {
    let mp = m.div_ceil(mr) * mr;
    let mut out = vec![0.0f32; mp * k];
    for k0 in (0..k).step_by(kcb) {
        let kc = kcb.min(k - k0);
        let block = &mut out[mp * k0..][..mp * kc];
        for (i, panel) in block.chunks_exact_mut(kc * mr).enumerate() {
            for ii in 0..mr.min(m - i * mr) {
                let src = &a[(i * mr + ii) * k + k0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * mr + ii] = v;
                }
            }
        }
    }
    out
}

/// The blocked driver (BLIS order jc → pc → ic → jr → ir) for one micro-kernel.
///
/// # Safety
/// The CPU must support the micro-kernel's instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_impl<K: Micro, B: BSource, F: FnMut(&mut [f32], usize)>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
    after: &mut F,
) {
    let (mr, nr) = (K::MR, K::NR);
    let mp = m.div_ceil(mr) * mr;
    let apack = pack_a(mr, m, k, a, balanced_kc(k, K::KC));
    let mut bpack = vec![0.0f32; K::KC * K::NC.min(n).div_ceil(nr) * nr];
    let kcb = balanced_kc(k, K::KC);
    for jc in (0..n).step_by(K::NC) {
        let nc = K::NC.min(n - jc);
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            b.pack(nr, pc, kc, jc, nc, &mut bpack);
            let ablock = &apack[mp * pc..][..mp * kc];
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                for jr in (0..nc).step_by(nr) {
                    let nv = nr.min(nc - jr);
                    let bpanel = &bpack[(jr / nr) * kc * nr..][..kc * nr];
                    for ir in (ic..ic + mc).step_by(mr) {
                        let apanel = &ablock[(ir / mr) * kc * mr..][..kc * mr];
                        let ct = CTile { c: &mut c[ir * ldc + jc + jr..], ldc, mv: mr.min(m - ir), nv };
                        // SAFETY: forwarded from the caller.
                        unsafe { K::tile(kc, apanel, bpanel, ct) };
                    }
                }
            }
        }
        after(c, jc + nc);
    }
}

/// AVX2 + FMA instantiation.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2<B: BSource, F: FnMut(&mut [f32], usize)>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
    after: &mut F,
) {
    // SAFETY: this function is only entered with AVX2 and FMA available.
    unsafe { gemm_impl::<Avx2, B, F>(m, k, n, a, b, c, ldc, after) }
}

/// The portable path: simd128 intrinsics on wasm when enabled, plain Rust elsewhere.
#[allow(clippy::too_many_arguments)]
fn gemm_fallback<B: BSource, F: FnMut(&mut [f32], usize)>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
    after: &mut F,
) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
    // SAFETY: simd128 is enabled at compile time; a build with the `relaxed-simd` feature is only
    // loaded where the engine validated a relaxed-SIMD module (the page checks first).
    unsafe {
        gemm_impl::<WasmRelaxed, B, F>(m, k, n, a, b, c, ldc, after)
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "relaxed-simd")))]
    // SAFETY: simd128 is enabled at compile time.
    unsafe {
        gemm_impl::<Simd128, B, F>(m, k, n, a, b, c, ldc, after)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    // SAFETY: the portable kernel uses no special instructions.
    unsafe {
        gemm_impl::<Portable, B, F>(m, k, n, a, b, c, ldc, after)
    }
}

/// Which GEMM micro-kernel this build and CPU use, for a person reading measured times: the
/// relaxed-SIMD (FMA) and SIMD128 wasm builds give different times in the same browser.
pub(crate) fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "native AVX2 + FMA";
        }
    }
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd")) {
        "wasm SIMD128 + FMA (relaxed)"
    } else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        "wasm SIMD128"
    } else {
        "portable"
    }
}

/// `C += A·B`: A is m × k row-major, B is k × n from `b`, C is m × n with leading dimension `ldc`.
/// The caller guarantees the slice sizes (`a.len() ≥ m·k`, `c.len() ≥ (m−1)·ldc + n`).
pub(crate) fn gemm<B: BSource>(m: usize, k: usize, n: usize, a: &[f32], b: &B, c: &mut [f32], ldc: usize) {
    gemm_then(m, k, n, a, b, c, ldc, |_, _| {})
}

/// [`gemm`] that calls `after(c, j)` each time columns `..j` of C are final (once per column
/// block, in order), while they are still in cache: the fused PW→DW path runs its depthwise there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_then<B: BSource, F: FnMut(&mut [f32], usize)>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &B,
    c: &mut [f32],
    ldc: usize,
    mut after: F,
) {
    if m == 0 || k == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            unsafe { gemm_avx2(m, k, n, a, b, c, ldc, &mut after) };
            return;
        }
    }
    gemm_fallback(m, k, n, a, b, c, ldc, &mut after)
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
    gemm_fallback(m, k, n, a, b, c, ldc, &mut |_, _| {})
}
