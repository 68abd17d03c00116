//! Two f64 lanes: wasm SIMD128 `f64x2` when the target has it, SSE2 `__m128d` on x86-64, a
//! plain `[f64; 2]` elsewhere. The decoupling kernels in [`super::fast`] are written once over
//! this type.

/// Two f64 lanes (wasm32 + simd128).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[derive(Clone, Copy)]
pub struct F2(core::arch::wasm32::v128);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl F2 {
    /// (0, 0).
    #[inline(always)]
    pub fn zero() -> F2 {
        F2(core::arch::wasm32::f64x2_splat(0.0))
    }

    /// (x, x).
    #[inline(always)]
    pub fn splat(x: f64) -> F2 {
        F2(core::arch::wasm32::f64x2_splat(x))
    }

    /// Loads `p[0], p[1]` (any alignment).
    ///
    /// # Safety
    /// `p` and `p + 1` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f64) -> F2 {
        // SAFETY: the caller guarantees two readable f64; wasm loads need no alignment.
        F2(unsafe { core::arch::wasm32::v128_load(p as *const core::arch::wasm32::v128) })
    }

    /// Stores both lanes at `p[0], p[1]`.
    ///
    /// # Safety
    /// `p` and `p + 1` must be writable.
    #[inline(always)]
    pub unsafe fn store(self, p: *mut f64) {
        // SAFETY: the caller guarantees two writable f64; wasm stores need no alignment.
        unsafe { core::arch::wasm32::v128_store(p as *mut core::arch::wasm32::v128, self.0) }
    }

    /// `self + a·b` (a multiply and an add: wasm SIMD has no FMA).
    #[inline(always)]
    pub fn mul_add(self, a: F2, b: F2) -> F2 {
        use core::arch::wasm32::{f64x2_add, f64x2_mul};
        F2(f64x2_add(self.0, f64x2_mul(a.0, b.0)))
    }

    /// Lane 0 + lane 1.
    #[inline(always)]
    pub fn sum(self) -> f64 {
        use core::arch::wasm32::f64x2_extract_lane;
        f64x2_extract_lane::<0>(self.0) + f64x2_extract_lane::<1>(self.0)
    }
}

/// Two f64 lanes (x86-64: SSE2 is part of the base instruction set).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct F2(core::arch::x86_64::__m128d);

#[cfg(target_arch = "x86_64")]
impl F2 {
    /// (0, 0).
    #[inline(always)]
    pub fn zero() -> F2 {
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { core::arch::x86_64::_mm_setzero_pd() })
    }

    /// (x, x).
    #[inline(always)]
    pub fn splat(x: f64) -> F2 {
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { core::arch::x86_64::_mm_set1_pd(x) })
    }

    /// Loads `p[0], p[1]` (any alignment).
    ///
    /// # Safety
    /// `p` and `p + 1` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f64) -> F2 {
        // SAFETY: the caller guarantees two readable f64; unaligned load.
        F2(unsafe { core::arch::x86_64::_mm_loadu_pd(p) })
    }

    /// Stores both lanes at `p[0], p[1]`.
    ///
    /// # Safety
    /// `p` and `p + 1` must be writable.
    #[inline(always)]
    pub unsafe fn store(self, p: *mut f64) {
        // SAFETY: the caller guarantees two writable f64; unaligned store.
        unsafe { core::arch::x86_64::_mm_storeu_pd(p, self.0) }
    }

    /// `self + a·b` (a multiply and an add, as in wasm).
    #[inline(always)]
    pub fn mul_add(self, a: F2, b: F2) -> F2 {
        use core::arch::x86_64::{_mm_add_pd, _mm_mul_pd};
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { _mm_add_pd(self.0, _mm_mul_pd(a.0, b.0)) })
    }

    /// Lane 0 + lane 1.
    #[inline(always)]
    pub fn sum(self) -> f64 {
        let mut out = [0.0f64; 2];
        // SAFETY: `out` holds two f64.
        unsafe { self.store(out.as_mut_ptr()) };
        out[0] + out[1]
    }
}

/// Two f64 lanes (portable).
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
#[derive(Clone, Copy)]
pub struct F2([f64; 2]);

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
impl F2 {
    /// (0, 0).
    #[inline(always)]
    pub fn zero() -> F2 {
        F2([0.0; 2])
    }

    /// (x, x).
    #[inline(always)]
    pub fn splat(x: f64) -> F2 {
        F2([x; 2])
    }

    /// Loads `p[0], p[1]` (any alignment).
    ///
    /// # Safety
    /// `p` and `p + 1` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f64) -> F2 {
        // SAFETY: the caller guarantees two readable f64.
        F2(unsafe { [p.read_unaligned(), p.add(1).read_unaligned()] })
    }

    /// Stores both lanes at `p[0], p[1]`.
    ///
    /// # Safety
    /// `p` and `p + 1` must be writable.
    #[inline(always)]
    pub unsafe fn store(self, p: *mut f64) {
        // SAFETY: the caller guarantees two writable f64.
        unsafe {
            p.write_unaligned(self.0[0]);
            p.add(1).write_unaligned(self.0[1]);
        }
    }

    /// `self + a·b` (rounded twice, as in wasm).
    #[inline(always)]
    pub fn mul_add(self, a: F2, b: F2) -> F2 {
        F2([self.0[0] + a.0[0] * b.0[0], self.0[1] + a.0[1] * b.0[1]])
    }

    /// Lane 0 + lane 1.
    #[inline(always)]
    pub fn sum(self) -> f64 {
        self.0[0] + self.0[1]
    }
}
