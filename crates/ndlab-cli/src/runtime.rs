//! Running a whole user graph in a real ONNX runtime, tract, for `ndlab evaluate` (the page runs
//! ndlab's own network program, tested against onnxruntime). ndlab's program computes the
//! activations and plans; arbitrary graphs are evaluated through this.

use ndlab_core::error::{Error, Result};
use tract_onnx::prelude::*;

/// Items per run (the model is optimised once per batch size).
const BATCH: usize = 128;

fn fail(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Format(format!("{what}: {e}"))
}

/// The model's first output on every item of `x` (dims N first), in batches: the output's dims
/// (N first) and values.
pub fn first_output(model: &[u8], dims: &[usize], x: &[f32]) -> Result<(Vec<usize>, Vec<f32>)> {
    let n = *dims.first().ok_or_else(|| Error::Shape("the data has no items".into()))?;
    let per: usize = dims.iter().skip(1).product();
    if x.len() != n * per {
        return Err(Error::Shape(format!("dims {dims:?} need {} values, got {}", n * per, x.len())));
    }
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &model[..]).map_err(|e| fail("the model", e))?;
    let mut plans: Vec<(usize, std::sync::Arc<TypedRunnableModel>)> = Vec::new();
    let mut out_dims = Vec::new();
    let mut out = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let b = BATCH.min(n - start);
        if !plans.iter().any(|(size, _)| *size == b) {
            let mut shape = dims.to_vec();
            shape[0] = b;
            let plan = tract_onnx::onnx()
                .model_for_proto_model(&proto)
                .and_then(|m| m.with_input_fact(0, f32::fact(&shape).into()))
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(|e| fail("tract could not prepare the model", format!("{e:#}")))?;
            plans.push((b, plan));
        }
        let plan =
            &plans.iter().find(|(size, _)| *size == b).ok_or_else(|| Error::Format("no plan".into()))?.1;
        let mut shape = dims.to_vec();
        shape[0] = b;
        let input = Tensor::from_shape(&shape, &x[start * per..(start + b) * per])
            .map_err(|e| fail("the input", e))?;
        let result = plan
            .run(tvec!(input.into()))
            .map_err(|e| fail("tract could not run the model", format!("{e:#}")))?;
        let first = result.first().ok_or_else(|| Error::Format("the model has no output".into()))?;
        let view = first.to_plain_array_view::<f32>().map_err(|e| fail("the model's first output", e))?;
        out_dims = view.shape().to_vec();
        out.extend(view.iter().copied());
    }
    if let Some(d) = out_dims.first_mut() {
        *d = n;
    }
    Ok((out_dims, out))
}
