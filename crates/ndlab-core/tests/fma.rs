//! The kernel label shown next to measured times (`ndlab_core::conv::kernels`) tells the truth about
//! fused multiply-adds: a 1×1 conv whose exact result is the rounding error of a product is
//! non-zero only when the GEMM fuses (FMA: AVX2 + FMA natively, relaxed SIMD in wasm) and zero
//! when it multiplies and adds separately (SIMD128, portable). The same check runs in the browser
//! (tests/wasm.rs), for the default and the `relaxed-simd` build.

use ndlab_core::conv::{conv2d, kernels};
use ndlab_core::{ConvGeometry, FeatureMap, Kernel};

/// `-round(x·x)·1 + x·x` through the GEMM, with x = 1 + 2⁻¹²: x² = 1 + 2⁻¹¹ + 2⁻²⁴ is a tie in
/// f32 (rounds to 1 + 2⁻¹¹), so a fused second step leaves 2⁻²⁴ and an unfused one 0.
fn fused_residue() -> f32 {
    let x = 1.0f32 + 1.0 / 4096.0;
    let r = x * x;
    let k = Kernel::new(1, 2, 1, 1, vec![-r, x]).expect("kernel");
    let input = FeatureMap::new(2, 1, 1, vec![1.0, x]).expect("input");
    conv2d(&input, &k, None, &ConvGeometry::new(1, 0, 1)).expect("conv").data[0]
}

#[test]
fn the_kernel_label_matches_whether_the_gemm_fuses() {
    let residue = fused_residue();
    let fused = kernels().contains("FMA");
    if fused {
        assert_eq!(
            residue,
            2f32.powi(-24),
            "{}: a fused step leaves the product's rounding error",
            kernels()
        );
    } else {
        assert_eq!(residue, 0.0, "{}: separate multiply and add cancel exactly", kernels());
    }
    println!("kernels: {}, residue {residue:e}", kernels());
}
