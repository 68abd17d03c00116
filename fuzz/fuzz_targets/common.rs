//! Shared body of the reader targets: list the layers of `bytes` as a file called `name`, then
//! decode a few of them with and without BatchNorm folding, in both layouts. Any panic, abort,
//! or runaway allocation is a bug; errors are the expected answer to garbage.

use ndlab_io::formats::{inspect, load_layer, Layout};

pub fn read_file(bytes: &[u8], name: &str) {
    for layout in [Layout::Oihw, Layout::Hwio] {
        let Ok(listing) = inspect(bytes, name, layout) else { continue };
        for entry in listing.layers.iter().take(3) {
            for fold in [false, true] {
                let _ = load_layer(bytes, name, &entry.name, layout, fold);
            }
        }
    }
}
