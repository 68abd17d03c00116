//! Matching biases and BatchNorms to conv weights by state_dict naming, and folding.

use super::{BnRef, TensorMeta};
use crate::vgg::{fold_bn, BN_EPS};
use ndlab_core::error::Result;
use ndlab_core::layer::Kernel;

/// Is there a 1-D tensor `name` of length `n` with a supported dtype?
fn has_vec(tensors: &[TensorMeta], name: &str, n: usize) -> bool {
    tensors.iter().any(|t| t.name == name && t.shape == [n] && t.dtype.is_ok())
}

/// The bias of conv weight `w`: `X.bias` for `X.weight`, `.../bias:0` for `.../kernel:0`,
/// else `w:bias`, `w.bias`, `w/bias`.
pub(crate) fn find_bias(tensors: &[TensorMeta], w: &str, n: usize) -> Option<String> {
    let mut cands = Vec::new();
    if let Some(m) = w.strip_suffix(".weight") {
        cands.push(format!("{m}.bias"));
    }
    if let Some(m) = w.strip_suffix("kernel:0") {
        cands.push(format!("{m}bias:0"));
    }
    if let Some(m) = w.strip_suffix("kernel") {
        cands.push(format!("{m}bias"));
    }
    cands.extend([format!("{w}:bias"), format!("{w}.bias"), format!("{w}/bias")]);
    cands.into_iter().find(|c| has_vec(tensors, c, n))
}

/// Candidate BatchNorm module prefixes for a conv module `m` (weight `m.weight`):
/// the next index (`features.0` → `features.1`), `conv` → `bn` in the last component
/// (`layer1.0.conv1` → `layer1.0.bn1`), and `m.bn`.
fn bn_prefixes(m: &str) -> Vec<String> {
    let (head, last) = match m.rfind('.') {
        Some(i) => (&m[..=i], &m[i + 1..]),
        None => ("", m),
    };
    let mut out = Vec::new();
    if let Ok(k) = last.parse::<u64>() {
        if let Some(k1) = k.checked_add(1) {
            out.push(format!("{head}{k1}"));
        }
    }
    if last.contains("conv") {
        out.push(format!("{head}{}", last.replacen("conv", "bn", 1)));
    }
    out.push(format!("{m}.bn"));
    out
}

/// The BatchNorm that follows conv weight `w` (all four parameters present, length `n`).
pub(crate) fn find_bn(tensors: &[TensorMeta], w: &str, n: usize) -> Option<BnRef> {
    let m = w.strip_suffix(".weight")?;
    bn_prefixes(m).into_iter().find_map(|p| {
        let r = BnRef {
            name: p.clone(),
            gamma: format!("{p}.weight"),
            beta: format!("{p}.bias"),
            mean: format!("{p}.running_mean"),
            var: format!("{p}.running_var"),
            eps: BN_EPS,
        };
        [&r.gamma, &r.beta, &r.mean, &r.var].iter().all(|nm| has_vec(tensors, nm, n)).then_some(r)
    })
}

/// Folds the BatchNorm `r` into the kernel and bias (a missing bias counts as zero).
pub(crate) fn fold(
    kernel: Kernel,
    bias: Option<Vec<f32>>,
    r: &BnRef,
    mut read: impl FnMut(&str) -> Result<Vec<f32>>,
) -> Result<(Kernel, Option<Vec<f32>>)> {
    let b = bias.unwrap_or_else(|| vec![0.0; kernel.n]);
    let (gamma, beta, mean, var) = (read(&r.gamma)?, read(&r.beta)?, read(&r.mean)?, read(&r.var)?);
    let (k, b) = fold_bn(&kernel, &b, &gamma, &beta, &mean, &var, r.eps)?;
    Ok((k, Some(b)))
}
