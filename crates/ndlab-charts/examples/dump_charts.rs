//! Writes every chart for a real layer (VGG16-BN conv1_2, T = 2) as SVG files, to look at:
//!   cargo run -p ndlab-charts --example dump_charts [-- OUT_DIR]     (default /tmp/ndlab-charts)

use ndlab_charts::*;
use ndlab_core::decouple::Decomposition;
use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel, Order};
use std::error::Error;

fn curve(d: &Decomposition) -> OrderCurves {
    let total: f64 = d.slices.iter().map(|s| s.energy).sum();
    let energy: Vec<f64> = (1..=d.full_rank)
        .map(|t| {
            d.slices.iter().map(|s| s.sigma[..t].iter().map(|x| x * x).sum::<f64>()).sum::<f64>() / total
        })
        .collect();
    let error = energy.iter().map(|e| (1.0 - e).max(0.0).sqrt()).collect();
    OrderCurves { order: d.order, energy, error }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp/ndlab-charts".into());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy");
    let a = ndlab_io::npy::read_npy(&std::fs::read(path)?)?;
    let k = Kernel::new(64, 64, 3, 3, a.data)?;
    let dw = Decomposition::new(&k, 1, Order::DwPw)?;
    let pw = Decomposition::new(&k, 1, Order::PwDw)?;
    let style = ChartStyle::default();
    std::fs::create_dir_all(&dir)?;
    let save = |name: &str, svg: Result<String, String>| -> Result<(), Box<dyn Error>> {
        std::fs::write(format!("{dir}/{name}.svg"), svg?)?;
        Ok(())
    };
    let mut spec = SpectrumData::from_spectra(&dw.spectra(), 2);
    spec.show_min_max = true;
    save("spectrum", to_svg(640, 400, |a| draw_spectrum(a, &spec, &style)))?;
    let ee = EnergyErrorData { curves: vec![curve(&dw), curve(&pw)], t: 2, order: Order::DwPw };
    save("energy_error", to_svg(700, 420, |a| draw_energy_error(a, &ee, &style)))?;
    let layer = ConvLayer::new(k.clone(), None, ConvGeometry::new(1, 1, 1))?;
    let cost = CostData::for_layer(&layer, 64, 64, 2, Order::DwPw)?;
    save("costs", to_svg(1000, 400, |a| draw_costs(a, &cost, &style)))?;
    let f = FilterGridData::from_decomposition(&k, &dw, 3, 2)?;
    save("filters", to_svg(900, 560, |a| draw_filters(a, &f, &style)))?;
    let o = OutputErrorData {
        series: vec![(Order::DwPw, vec![0.4, 0.25, 0.28, 0.1, 0.05, 0.02, 0.01, 0.004, 0.0])],
        t: 2,
        order: Order::DwPw,
        input_label: "astronaut".into(),
    };
    save("output_error", to_svg(640, 400, |a| draw_output_error(a, &o, &style)))?;
    let (h, w) = (96, 128);
    let x: Vec<f32> =
        (0..h * w).map(|i| ((i % w) as f32 / 9.0).sin() * ((i / w) as f32 / 7.0).cos()).collect();
    let y: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + 0.05 * ((i % 13) as f32 - 6.0) / 6.0).collect();
    let m = FeatureTripleData::new(
        &FeatureMap::new(1, h, w, x)?,
        &FeatureMap::new(1, h, w, y)?,
        0,
        MAX_MAP_SIDE,
        "T = 2, DW→PW",
    )?;
    save("maps", to_svg(900, 360, |a| draw_feature_maps(a, &m, &style)))?;
    println!("charts written to {dir}");
    Ok(())
}
