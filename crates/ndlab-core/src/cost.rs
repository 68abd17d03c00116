//! The cost model (METHOD.md "Costs"): multiply-accumulates and parameters of the regular layer
//! and of both decoupled orderings, speed-up and break-even T.
//!
//! | structure | MACs | params (no bias) |
//! |---|---|---|
//! | regular | N·c·K²·Ho·Wo | N·c·K² |
//! | DW→PW, T | C·T·K²·Ho·Wo + N·c·T·Ho·Wo | C·T·K² + N·c·T |
//! | PW→DW, T | N·T·c·H·W (at the input resolution) + N·T·K²·Ho·Wo | N·T·c + N·T·K² |
//!
//! with C the input channels of the layer, c = C / groups the inputs per group (the pointwise op
//! of a grouped conv stays within its group); for one group these are METHOD.md's formulas.

use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, Order};

/// Costs of one conv layer at a given input size, for the regular form and both decoupled forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostModel {
    /// Output channels N.
    pub n: usize,
    /// Input channels C of the whole layer.
    pub c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Groups (N and C are both multiples of it).
    pub groups: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height and width (from the geometry).
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl CostModel {
    /// A cost model for an N×(C/groups)×Kh×Kw kernel applied to a C×H×W input with `geom`
    /// (its `groups` is used). `c` is the input channels of the whole layer.
    pub fn new(
        n: usize,
        c: usize,
        kh: usize,
        kw: usize,
        h: usize,
        w: usize,
        geom: &ConvGeometry,
    ) -> Result<Self> {
        let groups = geom.groups;
        if n == 0 || c == 0 || kh == 0 || kw == 0 || h == 0 || w == 0 {
            return Err(Error::Shape("cost model needs non-zero sizes".into()));
        }
        if groups == 0 || n % groups != 0 || c % groups != 0 {
            return Err(Error::Shape(format!(
                "{n} outputs / {c} inputs cannot be split into {groups} groups"
            )));
        }
        let (ho, wo) = geom.output_size(h, w, kh, kw)?;
        Ok(CostModel { n, c, kh, kw, groups, h, w, ho, wo })
    }

    /// Costs per output pixel at stride 1 with the input at the output resolution (H·W = Ho·Wo = 1):
    /// the basis of METHOD.md's speed-up formulas. `c` is the input channels of the whole layer.
    pub fn per_output_pixel(n: usize, c: usize, kh: usize, kw: usize, groups: usize) -> Result<Self> {
        let mut geom = ConvGeometry::new(1, 0, 1);
        geom.groups = groups;
        let m = CostModel::new(n, c, kh, kw, kh, kw, &geom)?;
        Ok(CostModel { h: 1, w: 1, ho: 1, wo: 1, ..m })
    }

    /// K² = Kh·Kw.
    pub fn k2(&self) -> u64 {
        (self.kh * self.kw) as u64
    }

    /// Input channels per group.
    pub fn c_per_group(&self) -> u64 {
        (self.c / self.groups) as u64
    }

    fn out_px(&self) -> u64 {
        (self.ho * self.wo) as u64
    }

    fn in_px(&self) -> u64 {
        (self.h * self.w) as u64
    }

    /// MACs of the regular layer: N·c·K²·Ho·Wo.
    pub fn regular_macs(&self) -> u64 {
        self.n as u64 * self.c_per_group() * self.k2() * self.out_px()
    }

    /// Parameters of the regular layer (no bias): N·c·K².
    pub fn regular_params(&self) -> u64 {
        self.n as u64 * self.c_per_group() * self.k2()
    }

    /// MACs of the decoupled layer with T terms (see the table in the module doc).
    pub fn decoupled_macs(&self, order: Order, t: usize) -> u64 {
        let (t, n, k2, cg) = (t as u64, self.n as u64, self.k2(), self.c_per_group());
        match order {
            Order::DwPw => self.c as u64 * t * k2 * self.out_px() + n * cg * t * self.out_px(),
            Order::PwDw => n * t * cg * self.in_px() + n * t * k2 * self.out_px(),
        }
    }

    /// Parameters of the decoupled layer with T terms (no bias).
    pub fn decoupled_params(&self, order: Order, t: usize) -> u64 {
        let (t, n, k2, cg) = (t as u64, self.n as u64, self.k2(), self.c_per_group());
        match order {
            Order::DwPw => self.c as u64 * t * k2 + n * cg * t,
            Order::PwDw => n * t * cg + n * t * k2,
        }
    }

    /// Theoretical speed-up regular MACs / decoupled MACs for this geometry and T.
    pub fn speedup(&self, order: Order, t: usize) -> f64 {
        self.regular_macs() as f64 / self.decoupled_macs(order, t) as f64
    }

    /// Real-valued break-even T for this geometry: decoupled MACs are linear in T, so the
    /// decoupled layer is cheaper exactly when T < regular / decoupled(T = 1).
    pub fn break_even(&self, order: Order) -> f64 {
        self.regular_macs() as f64 / self.decoupled_macs(order, 1) as f64
    }

    /// The largest integer T that is strictly cheaper than the regular layer, if any.
    pub fn largest_faster_t(&self, order: Order) -> Option<usize> {
        largest_below(self.break_even(order))
    }
}

/// Per-output-pixel speed-up of DW→PW with T terms (any stride, the two ops share the output
/// resolution): `N·K² / (T·(N + g·K²))` (N·K² / (T·(N + K²)) for one group).
pub fn dwpw_speedup(n: usize, k2: usize, groups: usize, t: usize) -> f64 {
    let (n, k2, g, t) = (n as f64, k2 as f64, groups.max(1) as f64, t as f64);
    n * k2 / (t * (n + g * k2))
}

/// Per-output-pixel speed-up of PW→DW with T terms and `c` inputs per group, the pointwise op at
/// the input resolution (`s²` input pixels per output pixel): `c·K² / (T·(c·s² + K²))`.
pub fn pwdw_speedup(c: usize, k2: usize, stride: usize, t: usize) -> f64 {
    let (c, k2, s, t) = (c as f64, k2 as f64, stride as f64, t as f64);
    c * k2 / (t * (c * s * s + k2))
}

/// Per-output-pixel speed-up at stride 1 for a kernel N×c×K² (c = inputs per group).
pub fn pixel_speedup(order: Order, n: usize, c: usize, k2: usize, groups: usize, t: usize) -> f64 {
    match order {
        Order::DwPw => dwpw_speedup(n, k2, groups, t),
        Order::PwDw => pwdw_speedup(c, k2, 1, t),
    }
}

/// Real-valued break-even T at stride 1 (the T where the speed-up is 1):
/// DW→PW `N·K²/(N + g·K²)`, PW→DW `c·K²/(c + K²)`.
pub fn break_even_t(order: Order, n: usize, c: usize, k2: usize, groups: usize) -> f64 {
    pixel_speedup(order, n, c, k2, groups, 1)
}

/// The largest integer T ≥ 1 strictly below `t_star` (None when even T = 1 is not faster).
pub fn largest_below(t_star: f64) -> Option<usize> {
    if !t_star.is_finite() || t_star <= 1.0 {
        return None;
    }
    let t = t_star.ceil() as usize - 1;
    Some(t.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round2(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    #[test]
    fn method_worked_speedups_256() {
        let want = [8.69, 4.35, 2.90, 2.17, 1.74];
        for (i, &w) in want.iter().enumerate() {
            assert_eq!(round2(dwpw_speedup(256, 9, 1, i + 1)), w, "T={}", i + 1);
        }
        assert_eq!(round2(dwpw_speedup(256, 9, 1, 9)), 0.97);
        assert_eq!(round2(break_even_t(Order::DwPw, 256, 256, 9, 1)), 8.69);
        assert_eq!(largest_below(break_even_t(Order::DwPw, 256, 256, 9, 1)), Some(8));
    }

    #[test]
    fn model_matches_formula_at_stride_one_same_padding() {
        let m = CostModel::new(256, 256, 3, 3, 56, 56, &ConvGeometry::new(1, 1, 1)).unwrap();
        assert_eq!((m.ho, m.wo), (56, 56));
        assert_eq!(m.regular_macs(), 256 * 256 * 9 * 56 * 56);
        assert_eq!(m.decoupled_macs(Order::DwPw, 2), 256 * 2 * 9 * 3136 + 256 * 2 * 256 * 3136);
        assert_eq!(m.decoupled_macs(Order::PwDw, 2), 256 * 2 * 256 * 3136 + 256 * 2 * 9 * 3136);
        for t in 1..=9 {
            for order in [Order::DwPw, Order::PwDw] {
                let f = pixel_speedup(order, 256, 256, 9, 1, t);
                assert!((m.speedup(order, t) - f).abs() < 1e-12, "{order:?} T={t}");
            }
        }
        assert!((m.break_even(Order::DwPw) - 256.0 * 9.0 / 265.0).abs() < 1e-12);
        assert_eq!(m.largest_faster_t(Order::DwPw), Some(8));
        assert_eq!(m.regular_params(), 256 * 256 * 9);
        assert_eq!(m.decoupled_params(Order::DwPw, 3), 256 * 3 * 9 + 256 * 256 * 3);
        assert_eq!(m.decoupled_params(Order::PwDw, 3), 256 * 3 * 256 + 256 * 3 * 9);
    }

    #[test]
    fn per_output_pixel_model_matches_formulas() {
        let m = CostModel::per_output_pixel(256, 256, 3, 3, 1).unwrap();
        assert_eq!(m.regular_macs(), 256 * 256 * 9);
        assert_eq!(m.decoupled_macs(Order::DwPw, 1), 256 * 9 + 256 * 256);
        for t in 1..=9 {
            assert!((m.speedup(Order::PwDw, t) - pwdw_speedup(256, 9, 1, t)).abs() < 1e-12);
            assert!((m.speedup(Order::DwPw, t) - dwpw_speedup(256, 9, 1, t)).abs() < 1e-12);
        }
    }

    #[test]
    fn exact_decoupling_is_slower() {
        // T = K² (the exact DW→PW decoupling) is slower than the original layer.
        let m = CostModel::new(256, 256, 3, 3, 28, 28, &ConvGeometry::new(1, 1, 1)).unwrap();
        assert!(m.speedup(Order::DwPw, 9) < 1.0);
        assert!(m.speedup(Order::PwDw, 9) < 1.0);
    }

    #[test]
    fn pwdw_pointwise_runs_at_input_resolution() {
        // Stride 2, padding 1: 56×56 → 28×28. The PW op of PW→DW sees 56×56 pixels.
        let m = CostModel::new(128, 64, 3, 3, 56, 56, &ConvGeometry::new(2, 1, 1)).unwrap();
        assert_eq!((m.ho, m.wo), (28, 28));
        let t = 2u64;
        assert_eq!(m.decoupled_macs(Order::PwDw, 2), 128 * t * 64 * 56 * 56 + 128 * t * 9 * 28 * 28);
        assert_eq!(m.decoupled_macs(Order::DwPw, 2), 64 * t * 9 * 28 * 28 + 128 * 64 * t * 28 * 28);
        // Matches c·K²/(T·(c·s² + K²)) since H·W = 4·Ho·Wo here.
        assert!((m.speedup(Order::PwDw, 2) - pwdw_speedup(64, 9, 2, 2)).abs() < 1e-12);
        // DW→PW's per-pixel speed-up does not depend on the stride.
        assert!((m.speedup(Order::DwPw, 2) - dwpw_speedup(128, 9, 1, 2)).abs() < 1e-12);
    }

    #[test]
    fn padding_and_dilation_change_output_size() {
        // 3×3, dilation 2, padding 0 on 10×12: effective 5×5 → 6×8.
        let m = CostModel::new(8, 4, 3, 3, 10, 12, &ConvGeometry::new(1, 0, 2)).unwrap();
        assert_eq!((m.ho, m.wo), (6, 8));
        assert_eq!(m.regular_macs(), 8 * 4 * 9 * 48);
        assert_eq!(m.decoupled_macs(Order::PwDw, 1), 8 * 4 * 120 + 8 * 9 * 48);
    }

    #[test]
    fn grouped_costs_are_per_group() {
        // 2 groups: 16 outputs, 8 inputs (4 per group), 3×3.
        let mut g = ConvGeometry::new(1, 1, 1);
        g.groups = 2;
        let m = CostModel::new(16, 8, 3, 3, 10, 10, &g).unwrap();
        let px = 100u64;
        assert_eq!(m.regular_macs(), 16 * 4 * 9 * px);
        // DW on 8 channels ×T, PW inside each group: 8 outputs × (4·T) inputs, twice.
        assert_eq!(m.decoupled_macs(Order::DwPw, 2), 8 * 2 * 9 * px + 2 * 8 * 4 * 2 * px);
        assert_eq!(m.decoupled_macs(Order::PwDw, 2), 16 * 2 * 4 * px + 16 * 2 * 9 * px);
        assert!((m.speedup(Order::DwPw, 2) - dwpw_speedup(16, 9, 2, 2)).abs() < 1e-12);
        assert!(CostModel::new(16, 9, 3, 3, 10, 10, &g).is_err());
    }

    #[test]
    fn largest_below_edges() {
        assert_eq!(largest_below(4.0), Some(3));
        assert_eq!(largest_below(4.01), Some(4));
        assert_eq!(largest_below(1.0), None);
        assert_eq!(largest_below(0.5), None);
        assert_eq!(largest_below(1.5), Some(1));
        assert_eq!(largest_below(f64::NAN), None);
    }

    #[test]
    fn vgg16_convs_cost_15_35_gmacs() {
        // VGG16's 13 convs (3×3, padding 1) at 224×224, a 2×2 pool after blocks 1–4.
        let blocks: [&[(usize, usize)]; 5] = [
            &[(3, 64), (64, 64)],
            &[(64, 128), (128, 128)],
            &[(128, 256), (256, 256), (256, 256)],
            &[(256, 512), (512, 512), (512, 512)],
            &[(512, 512), (512, 512), (512, 512)],
        ];
        let (mut size, mut total, mut convs) = (224usize, 0u64, 0);
        for block in blocks {
            for &(c, n) in block {
                let m = CostModel::new(n, c, 3, 3, size, size, &ConvGeometry::new(1, 1, 1)).unwrap();
                assert_eq!((m.ho, m.wo), (size, size));
                total += m.regular_macs();
                convs += 1;
            }
            size /= 2;
        }
        assert_eq!(convs, 13);
        assert_eq!(round2(total as f64 / 1e9), 15.35, "{total}");
    }
}
