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

    /// `self + a·b` (a multiply and an add: wasm SIMD128 has no FMA).
    #[cfg(not(feature = "relaxed-simd"))]
    #[inline(always)]
    pub fn mul_add(self, a: F2, b: F2) -> F2 {
        use core::arch::wasm32::{f64x2_add, f64x2_mul};
        F2(f64x2_add(self.0, f64x2_mul(a.0, b.0)))
    }

    /// `self + a·b` with `f64x2.relaxed_madd` (the `relaxed-simd` build: one fused multiply-add
    /// where the CPU has FMA). Only inlined into functions compiled with
    /// `#[target_feature(enable = "relaxed-simd")]` (see [`super::fast`]); elsewhere it would be a
    /// call per operation.
    #[cfg(feature = "relaxed-simd")]
    #[inline(always)]
    pub fn mul_add(self, a: F2, b: F2) -> F2 {
        // (Safe in wasm: a module using it only loads where the engine validates relaxed SIMD,
        // which the page checks before loading the `relaxed-simd` worker.)
        F2(core::arch::wasm32::f64x2_relaxed_madd(a.0, b.0, self.0))
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

/// Lane-wise arithmetic, comparisons (masks: all bits set where true) and selection.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl F2 {
    /// (a, b).
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> F2 {
        F2(core::arch::wasm32::f64x2(a, b))
    }

    /// (lane 0, lane 1).
    #[inline(always)]
    pub fn lanes(self) -> (f64, f64) {
        use core::arch::wasm32::f64x2_extract_lane;
        (f64x2_extract_lane::<0>(self.0), f64x2_extract_lane::<1>(self.0))
    }

    /// Square root of each lane.
    #[inline(always)]
    pub fn sqrt(self) -> F2 {
        F2(core::arch::wasm32::f64x2_sqrt(self.0))
    }

    /// |x| of each lane.
    #[inline(always)]
    pub fn abs(self) -> F2 {
        F2(core::arch::wasm32::f64x2_abs(self.0))
    }

    /// Mask of `self < o`.
    #[inline(always)]
    pub fn lt(self, o: F2) -> F2 {
        F2(core::arch::wasm32::f64x2_lt(self.0, o.0))
    }

    /// Where `mask` is set, `a`; elsewhere `b`.
    #[inline(always)]
    pub fn select(mask: F2, a: F2, b: F2) -> F2 {
        F2(core::arch::wasm32::v128_bitselect(a.0, b.0, mask.0))
    }

    /// Whether any lane of `mask` is set.
    #[inline(always)]
    pub fn any(mask: F2) -> bool {
        core::arch::wasm32::v128_any_true(mask.0)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod ops {
    use super::F2;
    use core::arch::wasm32::{f64x2_add, f64x2_div, f64x2_mul, f64x2_sub};
    impl core::ops::Add for F2 {
        type Output = F2;
        #[inline(always)]
        fn add(self, o: F2) -> F2 {
            F2(f64x2_add(self.0, o.0))
        }
    }
    impl core::ops::Sub for F2 {
        type Output = F2;
        #[inline(always)]
        fn sub(self, o: F2) -> F2 {
            F2(f64x2_sub(self.0, o.0))
        }
    }
    impl core::ops::Mul for F2 {
        type Output = F2;
        #[inline(always)]
        fn mul(self, o: F2) -> F2 {
            F2(f64x2_mul(self.0, o.0))
        }
    }
    impl core::ops::Div for F2 {
        type Output = F2;
        #[inline(always)]
        fn div(self, o: F2) -> F2 {
            F2(f64x2_div(self.0, o.0))
        }
    }
}

/// Lane-wise arithmetic, comparisons (masks: all bits set where true) and selection.
#[cfg(target_arch = "x86_64")]
impl F2 {
    /// (a, b).
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> F2 {
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { core::arch::x86_64::_mm_setr_pd(a, b) })
    }

    /// (lane 0, lane 1).
    #[inline(always)]
    pub fn lanes(self) -> (f64, f64) {
        let mut out = [0.0f64; 2];
        // SAFETY: `out` holds two f64.
        unsafe { self.store(out.as_mut_ptr()) };
        (out[0], out[1])
    }

    /// Square root of each lane.
    #[inline(always)]
    pub fn sqrt(self) -> F2 {
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { core::arch::x86_64::_mm_sqrt_pd(self.0) })
    }

    /// |x| of each lane.
    #[inline(always)]
    pub fn abs(self) -> F2 {
        use core::arch::x86_64::{_mm_andnot_pd, _mm_set1_pd};
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { _mm_andnot_pd(_mm_set1_pd(-0.0), self.0) })
    }

    /// Mask of `self < o`.
    #[inline(always)]
    pub fn lt(self, o: F2) -> F2 {
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { core::arch::x86_64::_mm_cmplt_pd(self.0, o.0) })
    }

    /// Where `mask` is set, `a`; elsewhere `b`.
    #[inline(always)]
    pub fn select(mask: F2, a: F2, b: F2) -> F2 {
        use core::arch::x86_64::{_mm_and_pd, _mm_andnot_pd, _mm_or_pd};
        // SAFETY: SSE2 is always available on x86-64.
        F2(unsafe { _mm_or_pd(_mm_and_pd(mask.0, a.0), _mm_andnot_pd(mask.0, b.0)) })
    }

    /// Whether any lane of `mask` is set.
    #[inline(always)]
    pub fn any(mask: F2) -> bool {
        // SAFETY: SSE2 is always available on x86-64.
        unsafe { core::arch::x86_64::_mm_movemask_pd(mask.0) != 0 }
    }
}

#[cfg(target_arch = "x86_64")]
mod ops {
    use super::F2;
    use core::arch::x86_64::{_mm_add_pd, _mm_div_pd, _mm_mul_pd, _mm_sub_pd};
    impl core::ops::Add for F2 {
        type Output = F2;
        #[inline(always)]
        fn add(self, o: F2) -> F2 {
            // SAFETY: SSE2 is always available on x86-64.
            F2(unsafe { _mm_add_pd(self.0, o.0) })
        }
    }
    impl core::ops::Sub for F2 {
        type Output = F2;
        #[inline(always)]
        fn sub(self, o: F2) -> F2 {
            // SAFETY: SSE2 is always available on x86-64.
            F2(unsafe { _mm_sub_pd(self.0, o.0) })
        }
    }
    impl core::ops::Mul for F2 {
        type Output = F2;
        #[inline(always)]
        fn mul(self, o: F2) -> F2 {
            // SAFETY: SSE2 is always available on x86-64.
            F2(unsafe { _mm_mul_pd(self.0, o.0) })
        }
    }
    impl core::ops::Div for F2 {
        type Output = F2;
        #[inline(always)]
        fn div(self, o: F2) -> F2 {
            // SAFETY: SSE2 is always available on x86-64.
            F2(unsafe { _mm_div_pd(self.0, o.0) })
        }
    }
}

/// Lane-wise arithmetic, comparisons (masks: all bits set where true) and selection.
#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
impl F2 {
    /// (a, b).
    #[inline(always)]
    pub fn new(a: f64, b: f64) -> F2 {
        F2([a, b])
    }

    /// (lane 0, lane 1).
    #[inline(always)]
    pub fn lanes(self) -> (f64, f64) {
        (self.0[0], self.0[1])
    }

    /// Square root of each lane.
    #[inline(always)]
    pub fn sqrt(self) -> F2 {
        F2(self.0.map(f64::sqrt))
    }

    /// |x| of each lane.
    #[inline(always)]
    pub fn abs(self) -> F2 {
        F2(self.0.map(f64::abs))
    }

    /// Mask of `self < o`.
    #[inline(always)]
    pub fn lt(self, o: F2) -> F2 {
        let m = |t: bool| f64::from_bits(if t { u64::MAX } else { 0 });
        F2([m(self.0[0] < o.0[0]), m(self.0[1] < o.0[1])])
    }

    /// Where `mask` is set, `a`; elsewhere `b`.
    #[inline(always)]
    pub fn select(mask: F2, a: F2, b: F2) -> F2 {
        let pick = |l: usize| if mask.0[l].to_bits() != 0 { a.0[l] } else { b.0[l] };
        F2([pick(0), pick(1)])
    }

    /// Whether any lane of `mask` is set.
    #[inline(always)]
    pub fn any(mask: F2) -> bool {
        mask.0.iter().any(|x| x.to_bits() != 0)
    }
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
mod ops {
    use super::F2;
    impl core::ops::Add for F2 {
        type Output = F2;
        #[inline(always)]
        fn add(self, o: F2) -> F2 {
            F2([self.0[0] + o.0[0], self.0[1] + o.0[1]])
        }
    }
    impl core::ops::Sub for F2 {
        type Output = F2;
        #[inline(always)]
        fn sub(self, o: F2) -> F2 {
            F2([self.0[0] - o.0[0], self.0[1] - o.0[1]])
        }
    }
    impl core::ops::Mul for F2 {
        type Output = F2;
        #[inline(always)]
        fn mul(self, o: F2) -> F2 {
            F2([self.0[0] * o.0[0], self.0[1] * o.0[1]])
        }
    }
    impl core::ops::Div for F2 {
        type Output = F2;
        #[inline(always)]
        fn div(self, o: F2) -> F2 {
            F2([self.0[0] / o.0[0], self.0[1] / o.0[1]])
        }
    }
}
