//! The Web Worker built with the `relaxed-simd` feature: the same code as `ndlab-worker`
//! (src/bin/worker.rs, included as a module), with the GEMM's relaxed-SIMD (FMA) micro-kernel.
//! A module containing relaxed-SIMD opcodes does not validate in engines without relaxed SIMD
//! (Safari), so the page starts this worker only where a tiny relaxed-SIMD module validates
//! (index.html, src/app/client.rs) and `ndlab-worker` elsewhere.

#[path = "worker.rs"]
mod worker;

fn main() {
    worker::main();
}
