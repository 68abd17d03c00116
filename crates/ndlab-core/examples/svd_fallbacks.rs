//! How often the checked SVD falls back to one-sided Jacobi on the real 256→256 layers, both
//! orderings, and the smallest σ_min/σ_max met. Prints; asserts nothing (not a test).
//!   cargo run --release -p ndlab-core --example svd_fallbacks

use ndlab_core::decouple::{slice_matrix, slice_shape};
use ndlab_core::svd::{svd, SvdMethod};
use ndlab_core::{Kernel, Order};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/layers");
    for name in ["craft_vgg16bn_conv3_2_256x256x3x3.npy", "dlib_resnet_conv256_1_conv1_256x256x3x3.npy"] {
        let a = ndlab_io::npy::read_npy(&std::fs::read(dir.join(name))?)?;
        let [n, c, kh, kw] = a.shape[..] else { return Err(format!("{name}: not 4-D").into()) };
        let k = Kernel::new(n, c, kh, kw, a.data)?;
        for order in [Order::DwPw, Order::PwDw] {
            let (count, rows, cols) = slice_shape(&k, 1, order)?;
            let (mut slow, mut worst) = (0, 1.0f64);
            for s in 0..count {
                let d = svd(&slice_matrix(&k, 1, order, s)?, rows, cols)?;
                slow += usize::from(d.method == SvdMethod::OneSidedJacobi);
                worst = worst.min(d.sigma[d.k() - 1] / d.sigma[0]);
            }
            println!(
                "{name} {}: {slow}/{count} slices fell back; min σ_min/σ_max {worst:.2e}",
                order.label()
            );
        }
    }
    Ok(())
}
