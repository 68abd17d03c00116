//! The browser app's entry point: it only mounts the app.
#[cfg(target_arch = "wasm32")]
fn main() {
    ndlab_web::app::mount();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("ndlab-app is the browser app: run it with `trunk serve` (see README.md).");
}
