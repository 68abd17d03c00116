//! The page's first-load work natively, stage by stage (one thread): decoupling VGG16-BN conv3_2
//! in both orderings, the network prefix on the default image, the original layer, the decoupled
//! forward at T = 2 and the output-error curve. `cargo run --release --example page_timing`.

use ndlab_core::Order;
use ndlab_lab::engine::{Engine, WORKING_SIDE};
use ndlab_lab::protocol::{Request, RequestBody, ResponseBody};
use std::time::Instant;

fn clock() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut e = Engine::new(clock);
    let requests = [
        RequestBody::LoadExample { example: "vgg16bn_conv3_2".into(), slice: None },
        RequestBody::LoadBuiltinImage { image: "astronaut".into() },
        RequestBody::Forward { t: 2, order: Order::DwPw, out_channel: 0 },
        RequestBody::OutputErrorCurve { order: Order::DwPw },
    ];
    println!("working side {WORKING_SIDE}");
    for (id, body) in requests.into_iter().enumerate() {
        for path in e.assets_needed(&body) {
            e.provide(&path, std::fs::read(format!("{root}/{path}"))?);
        }
        let kind = format!("{:?}", body.kind());
        let mut last = clock();
        let start = last;
        let resp = e.handle(Request { id: id as u64 + 1, body }, &mut |p| {
            if let ResponseBody::Progress { stage, .. } = p.body {
                let now = clock();
                println!("  {:>7.1} ms  then: {stage}", now - last);
                last = now;
            }
        });
        let done = clock();
        let json = ndlab_lab::protocol::to_json(&resp);
        println!(
            "{kind}: {:.1} ms; answer {} KB of JSON in {:.1} ms",
            done - start,
            json.len() / 1024,
            clock() - done
        );
        if let ResponseBody::Error { message } = resp.body {
            return Err(message.into());
        }
    }
    Ok(())
}
