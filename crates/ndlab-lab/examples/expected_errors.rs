//! Prints, as JSON, the relative weight error for T = 1..=full rank of a built-in example in both
//! orderings, as the native core computes it. The end-to-end tests compare the page's numbers
//! with these. Usage: `cargo run --release --example expected_errors -- <example-id> [repo root]`.

use ndlab_core::decouple::Decomposition;
use ndlab_core::Order;
use ndlab_lab::examples::{self, KernelSource};
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("expected_errors: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let id = args.next().ok_or("usage: expected_errors <example-id> [repo root]")?;
    let root = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let ex = examples::find(&id).ok_or(format!("unknown example {id}"))?;
    let kernel = match ex.kernel {
        KernelSource::Asset(p) => {
            let bytes = std::fs::read(root.join(p)).map_err(|e| format!("{p}: {e}"))?;
            ndlab_io::npy::read_npy(&bytes).and_then(|a| a.into_kernel()).map_err(|e| e.to_string())?
        }
        KernelSource::Generated(g) => g.kernel().map_err(|e| e.to_string())?,
    };
    let mut parts = Vec::new();
    for order in [Order::DwPw, Order::PwDw] {
        let d = Decomposition::new(&kernel, 1, order).map_err(|e| e.to_string())?;
        let errs: Vec<String> = d.rel_weight_error().iter().map(|v| format!("{v:.17e}")).collect();
        parts.push(format!("\"{}\":[{}]", order.as_str(), errs.join(",")));
    }
    println!("{{{}}}", parts.join(","));
    Ok(())
}
