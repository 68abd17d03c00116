//! The operators around the convolutions, on plain row-major f32 arrays: each has a function
//! giving its output dims (shape inference without data) and one computing it. ONNX semantics
//! (opset 7–21) for the subset ndlab runs.

use crate::error::{Error, Result};

/// A dense f32 array, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

impl Value {
    /// A value, checked: the dims' product equals the values' count.
    pub fn new(dims: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = numel(&dims)?;
        if n != data.len() {
            return Err(Error::Shape(format!("dims {dims:?} need {n} values, got {}", data.len())));
        }
        Ok(Value { dims, data })
    }
}

/// The product of `dims`, or an error on overflow.
pub fn numel(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::TooLarge(format!("dims {dims:?} overflow")))
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The numpy broadcast of two shapes.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let get = |d: &[usize], i: usize| if i + d.len() >= n { d[i + d.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(Error::Shape(format!("cannot broadcast {a:?} with {b:?} ({x} against {y})"))),
        })
        .collect()
}

/// An elementwise binary operator with numpy broadcasting.
pub fn binary(a: &Value, b: &Value, f: impl Fn(f32, f32) -> f32) -> Result<Value> {
    let dims = broadcast_dims(&a.dims, &b.dims)?;
    if a.dims == dims && b.dims == dims {
        let data = a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect();
        return Value::new(dims, data);
    }
    let n = dims.len();
    let pad = |d: &[usize]| {
        let mut p = vec![1; n - d.len()];
        p.extend_from_slice(d);
        p
    };
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let (sa, sb) = (strides(&da), strides(&db));
    let out_strides = strides(&dims);
    let total = numel(&dims)?;
    let mut data = Vec::with_capacity(total);
    for i in 0..total {
        let (mut ia, mut ib, mut rest) = (0, 0, i);
        for k in 0..n {
            let idx = rest / out_strides[k];
            rest %= out_strides[k];
            if da[k] != 1 {
                ia += idx * sa[k];
            }
            if db[k] != 1 {
                ib += idx * sb[k];
            }
        }
        data.push(f(a.data[ia], b.data[ib]));
    }
    Value::new(dims, data)
}

/// `Transpose` output dims.
pub fn transpose_dims(dims: &[usize], perm: &[usize]) -> Result<Vec<usize>> {
    let mut seen = vec![false; dims.len()];
    if perm.len() != dims.len()
        || perm.iter().any(|&p| p >= dims.len() || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::Shape(format!("perm {perm:?} does not permute {} dims", dims.len())));
    }
    Ok(perm.iter().map(|&p| dims[p]).collect())
}

/// `Transpose`.
pub fn transpose(x: &Value, perm: &[usize]) -> Result<Value> {
    let dims = transpose_dims(&x.dims, perm)?;
    let in_strides = strides(&x.dims);
    let out_strides = strides(&dims);
    let total = x.data.len();
    let mut data = vec![0.0; total];
    for (i, o) in data.iter_mut().enumerate() {
        let (mut src, mut rest) = (0, i);
        for (k, &p) in perm.iter().enumerate() {
            let idx = rest / out_strides[k];
            rest %= out_strides[k];
            src += idx * in_strides[p];
        }
        *o = x.data[src];
    }
    Value::new(dims, data)
}

/// Pooling attributes, resolved for one input (2-D, NCHW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pool2d {
    /// Kernel height and width.
    pub k: (usize, usize),
    /// Strides.
    pub stride: (usize, usize),
    /// Padding top, left, bottom, right.
    pub pads: [usize; 4],
    /// Output height and width.
    pub out: (usize, usize),
}

impl Pool2d {
    /// Resolves the window for an `h` × `w` input: explicit `pads` (or `auto_pad`), `ceil_mode`.
    pub fn new(
        (h, w): (usize, usize),
        k: (usize, usize),
        stride: (usize, usize),
        pads: [usize; 4],
        auto_pad: &str,
        ceil_mode: bool,
    ) -> Result<Self> {
        if k.0 == 0 || k.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(Error::Param("pool kernel and strides must be at least 1".into()));
        }
        let pads = match auto_pad {
            "" | "NOTSET" => pads,
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let (th, tw) = (same_total(h, k.0, stride.0, 1), same_total(w, k.1, stride.1, 1));
                let upper = auto_pad == "SAME_UPPER";
                let split = |t: usize| if upper { (t / 2, t - t / 2) } else { (t - t / 2, t / 2) };
                let ((t, b), (l, r)) = (split(th), split(tw));
                [t, l, b, r]
            }
            other => return Err(Error::Format(format!("unknown auto_pad '{other}'"))),
        };
        let size = |n: usize, p0: usize, p1: usize, k: usize, s: usize| -> Result<usize> {
            let span = n + p0 + p1;
            if span < k {
                return Err(Error::Shape(format!("pool window {k} is larger than the padded input {span}")));
            }
            let mut o = if ceil_mode { (span - k).div_ceil(s) + 1 } else { (span - k) / s + 1 };
            // The last window must start inside the input or its leading padding.
            if ceil_mode && (o - 1) * s >= n + p0 {
                o -= 1;
            }
            Ok(o)
        };
        let out = (size(h, pads[0], pads[2], k.0, stride.0)?, size(w, pads[1], pads[3], k.1, stride.1)?);
        Ok(Pool2d { k, stride, pads, out })
    }
}

/// Total padding of a SAME conv or pool along one axis.
pub fn same_total(n: usize, k: usize, s: usize, d: usize) -> usize {
    let out = n.div_ceil(s);
    let span = (k - 1) * d + 1;
    ((out - 1) * s + span).saturating_sub(n)
}

/// Max or average pooling of an NCHW value (`average`: mean over the window's cells inside
/// the input, or over the whole window when `count_pad`).
pub fn pool(x: &Value, p: &Pool2d, average: bool, count_pad: bool) -> Result<Value> {
    let [n, c, h, w] = dims4(&x.dims, "pooling")?;
    let (oh, ow) = p.out;
    let mut data = Vec::with_capacity(n * c * oh * ow);
    for plane in x.data.chunks_exact(h * w).take(n * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * p.stride.0) as isize - p.pads[0] as isize;
                let x0 = (ox * p.stride.1) as isize - p.pads[1] as isize;
                let (mut acc, mut cells) = (if average { 0.0f32 } else { f32::NEG_INFINITY }, 0usize);
                for ky in 0..p.k.0 as isize {
                    for kx in 0..p.k.1 as isize {
                        let (yy, xx) = (y0 + ky, x0 + kx);
                        if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                            continue;
                        }
                        let v = plane[yy as usize * w + xx as usize];
                        if average {
                            acc += v;
                        } else {
                            acc = acc.max(v);
                        }
                        cells += 1;
                    }
                }
                let v = if average {
                    let count = if count_pad { p.k.0 * p.k.1 } else { cells.max(1) };
                    acc / count as f32
                } else if cells == 0 {
                    0.0
                } else {
                    acc
                };
                data.push(v);
            }
        }
    }
    Value::new(vec![n, c, oh, ow], data)
}

/// The four dims of an NCHW value.
pub fn dims4(dims: &[usize], what: &str) -> Result<[usize; 4]> {
    match dims {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::Shape(format!("{what} needs a 4-D NCHW input, got dims {dims:?}"))),
    }
}

/// `Softmax` over the dims from `axis` on (opset < 13: the input coerced to 2-D at `axis`), or
/// over `axis` alone (opset ≥ 13).
pub fn softmax(x: &Value, axis: usize, coerce: bool) -> Result<Value> {
    if axis >= x.dims.len() {
        return Err(Error::Shape(format!("softmax axis {axis} of a {}-D value", x.dims.len())));
    }
    let (outer, len, inner) = if coerce {
        (x.dims[..axis].iter().product::<usize>(), x.dims[axis..].iter().product::<usize>(), 1)
    } else {
        (x.dims[..axis].iter().product(), x.dims[axis], x.dims[axis + 1..].iter().product())
    };
    let mut data = x.data.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * len * inner + k * inner + i;
            let max = (0..len).map(|k| data[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for k in 0..len {
                let e = ((data[at(k)] - max) as f64).exp();
                data[at(k)] = e as f32;
                sum += e;
            }
            for k in 0..len {
                data[at(k)] = (data[at(k)] as f64 / sum) as f32;
            }
        }
    }
    Value::new(x.dims.clone(), data)
}

/// `Gemm`: α·A'·B' + β·C with A' = A or Aᵀ, B' = B or Bᵀ (2-D), C broadcast to M × N.
pub fn gemm(
    a: &Value,
    b: &Value,
    c: Option<&Value>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
) -> Result<Value> {
    let (&[ar, ac], &[br, bc]) = (a.dims.as_slice(), b.dims.as_slice()) else {
        return Err(Error::Shape(format!("Gemm needs 2-D inputs, got {:?} and {:?}", a.dims, b.dims)));
    };
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(Error::Shape(format!("Gemm: {m}×{k} times {k2}×{n}")));
    }
    let ai = |i: usize, p: usize| if ta { a.data[p * ac + i] } else { a.data[i * ac + p] };
    let bi = |p: usize, j: usize| if tb { b.data[j * bc + p] } else { b.data[p * bc + j] };
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = ai(i, p);
            if av == 0.0 {
                continue;
            }
            let row = &mut out[i * n..(i + 1) * n];
            for (j, o) in row.iter_mut().enumerate() {
                *o += av * bi(p, j);
            }
        }
    }
    let mut y = Value::new(vec![m, n], out)?;
    if alpha != 1.0 {
        y.data.iter_mut().for_each(|v| *v *= alpha);
    }
    if let Some(c) = c {
        let scaled = Value { dims: c.dims.clone(), data: c.data.iter().map(|v| v * beta).collect() };
        y = binary(&y, &scaled, |p, q| p + q)?;
        if y.dims != [m, n] {
            return Err(Error::Shape(format!("Gemm's C of dims {:?} does not broadcast to {m}×{n}", c.dims)));
        }
    }
    Ok(y)
}

/// `MatMul` of a value of dims [..., M, K] by a 2-D [K, N].
pub fn matmul(a: &Value, b: &Value) -> Result<Value> {
    let (&[k, n], Some((&ka, lead))) = (b.dims.as_slice(), a.dims.split_last()) else {
        return Err(Error::Shape(format!("MatMul of {:?} by {:?} (the second must be 2-D)", a.dims, b.dims)));
    };
    if ka != k {
        return Err(Error::Shape(format!("MatMul: inner dims {ka} and {k}")));
    }
    let rows = lead.iter().product::<usize>();
    let a2 = Value { dims: vec![rows, k], data: a.data.clone() };
    let y = gemm(&a2, b, None, 1.0, 0.0, false, false)?;
    let mut dims = lead.to_vec();
    dims.push(n);
    Value::new(dims, y.data)
}
