//! Helpers shared by integration tests (`mod common;`).

use ndlab_core::Order;

/// Both orderings.
pub const ORDERS: [Order; 2] = [Order::DwPw, Order::PwDw];

/// The real pretrained layers shipped beside the project (`assets/layers/`).
pub const LAYERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/layers");

/// Deterministic pseudo-random values in [-1, 1) (xorshift; `seed` 0 is fine).
pub fn rand_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}
