use ndlab::conv::{conv2d, pointwise};
use ndlab::{ConvGeometry, FeatureMap, Kernel};
fn main() {
    let (c, h, w) = (256, 56, 56);
    let x = FeatureMap::new(c, h, w, vec![0.5; c * h * w]).unwrap();
    let k = Kernel::new(256, c, 3, 3, vec![0.1; 256 * c * 9]).unwrap();
    let which = std::env::args().nth(1).unwrap_or_default();
    for _ in 0..3 {
        if which == "pw" {
            let _ = pointwise(&x, &vec![0.1; 512 * 256], 512, 1, None);
        } else {
            let _ = conv2d(&x, &k, None, &ConvGeometry::new(1, 1, 1));
        }
    }
}
