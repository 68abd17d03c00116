//! Prints, as JSON, the relative weight error for T = 1..=full rank of a built-in example in both
//! orderings, as the native core computes it. The end-to-end tests compare the page's numbers
//! with these. Usage: `cargo run --release --example expected_errors -- <example-id> [repo root]`.

use ndlab::decouple::Decomposition;
use ndlab::engine::EXAMPLES;
use ndlab::Order;
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
    let ex = EXAMPLES.iter().find(|e| e.id == id).ok_or(format!("unknown example {id}"))?;
    let bytes = match ex.asset_path() {
        Some(p) => Some(std::fs::read(root.join(p)).map_err(|e| format!("{p}: {e}"))?),
        None => None,
    };
    let layer = ex.build(bytes.as_deref()).map_err(|e| e.to_string())?;
    let mut parts = Vec::new();
    for order in [Order::DwPw, Order::PwDw] {
        let d = Decomposition::new(&layer.kernel, layer.geometry.groups, order).map_err(|e| e.to_string())?;
        let errs: Vec<String> = d.rel_weight_error().iter().map(|v| format!("{v:.17e}")).collect();
        parts.push(format!("\"{}\":[{}]", order.as_str(), errs.join(",")));
    }
    println!("{{{}}}", parts.join(","));
    Ok(())
}
