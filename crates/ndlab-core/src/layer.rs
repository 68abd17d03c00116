//! The layer model: conv kernels (OIHW), their geometry, and feature maps (CHW).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Largest number of elements any tensor may have (2^28 f32 = 1 GiB). Readers refuse larger
/// shapes before allocating.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// A conv kernel in OIHW layout: `n` output channels, `c` input channels *per group*,
/// `kh` × `kw` taps. `data[((o * c + i) * kh + y) * kw + x]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    pub n: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub data: Vec<f32>,
}

/// Zero padding on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Padding { top: p, bottom: p, left: p, right: p }
    }
}

/// Stride, padding, dilation and groups of a conv (PyTorch/ONNX semantics, cross-correlation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeometry {
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    pub padding: Padding,
    /// (vertical, horizontal)
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for ConvGeometry {
    fn default() -> Self {
        ConvGeometry { stride: (1, 1), padding: Padding::default(), dilation: (1, 1), groups: 1 }
    }
}

impl ConvGeometry {
    /// Stride `s`, padding `p` on every side, dilation `d`, one group.
    pub fn new(s: usize, p: usize, d: usize) -> Self {
        ConvGeometry { stride: (s, s), padding: Padding::uniform(p), dilation: (d, d), groups: 1 }
    }

    /// Output size (ho, wo) for an `h` × `w` input and a `kh` × `kw` kernel.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Result<(usize, usize)> {
        if self.stride.0 == 0 || self.stride.1 == 0 || self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(Error::Param("stride and dilation must be at least 1".into()));
        }
        let eh = self.dilation.0 * (kh.max(1) - 1) + 1;
        let ew = self.dilation.1 * (kw.max(1) - 1) + 1;
        let ph = h + self.padding.top + self.padding.bottom;
        let pw = w + self.padding.left + self.padding.right;
        if ph < eh || pw < ew {
            return Err(Error::Shape(format!(
                "input {h}×{w} (padded {ph}×{pw}) is smaller than the dilated kernel {eh}×{ew}"
            )));
        }
        Ok(((ph - eh) / self.stride.0 + 1, (pw - ew) / self.stride.1 + 1))
    }
}

impl Kernel {
    /// A kernel from OIHW data, checking the length and that every value is finite.
    pub fn new(n: usize, c: usize, kh: usize, kw: usize, data: Vec<f32>) -> Result<Self> {
        let len = checked_len(&[n, c, kh, kw])?;
        if len != data.len() {
            return Err(Error::Shape(format!(
                "kernel {n}×{c}×{kh}×{kw} needs {len} values, got {}",
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("kernel value #{i} is {}", data[i])));
        }
        Ok(Kernel { n, c, kh, kw, data })
    }

    /// A kernel from a 4-D tensor in HWIO layout (TensorFlow/Keras): `data[((y*kw + x)*c + i)*n + o]`.
    pub fn from_hwio(kh: usize, kw: usize, c: usize, n: usize, data: &[f32]) -> Result<Self> {
        let len = checked_len(&[n, c, kh, kw])?;
        if len != data.len() {
            return Err(Error::Shape(format!("HWIO tensor needs {len} values, got {}", data.len())));
        }
        let mut out = vec![0.0f32; len];
        for y in 0..kh {
            for x in 0..kw {
                for i in 0..c {
                    for o in 0..n {
                        out[((o * c + i) * kh + y) * kw + x] = data[((y * kw + x) * c + i) * n + o];
                    }
                }
            }
        }
        Kernel::new(n, c, kh, kw, out)
    }

    /// K² = kh · kw.
    pub fn k2(&self) -> usize {
        self.kh * self.kw
    }

    /// The kh × kw filter W[o, i] as a slice.
    pub fn filter(&self, o: usize, i: usize) -> &[f32] {
        let k2 = self.k2();
        let start = (o * self.c + i) * k2;
        &self.data[start..start + k2]
    }

    /// ‖W‖²_F in f64.
    pub fn norm_sq(&self) -> f64 {
        self.data.iter().map(|&v| (v as f64) * (v as f64)).sum()
    }
}

/// A conv layer: kernel, optional bias (length n), geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvLayer {
    pub kernel: Kernel,
    pub bias: Option<Vec<f32>>,
    pub geometry: ConvGeometry,
}

impl ConvLayer {
    /// Checks that bias length and groups fit the kernel.
    pub fn new(kernel: Kernel, bias: Option<Vec<f32>>, geometry: ConvGeometry) -> Result<Self> {
        if let Some(b) = &bias {
            if b.len() != kernel.n {
                return Err(Error::Shape(format!(
                    "bias has {} values for {} output channels",
                    b.len(),
                    kernel.n
                )));
            }
            if b.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite("bias holds NaN or infinity".into()));
            }
        }
        if geometry.groups == 0 || kernel.n % geometry.groups != 0 {
            return Err(Error::Shape(format!(
                "{} output channels cannot be split into {} groups",
                kernel.n, geometry.groups
            )));
        }
        Ok(ConvLayer { kernel, bias, geometry })
    }

    /// Input channels of the whole layer (c per group × groups).
    pub fn in_channels(&self) -> usize {
        self.kernel.c * self.geometry.groups
    }
}

/// A feature map C × H × W, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMap {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// A feature map from CHW data, checking the length.
    pub fn new(c: usize, h: usize, w: usize, data: Vec<f32>) -> Result<Self> {
        let len = checked_len(&[c, h, w])?;
        if len != data.len() {
            return Err(Error::Shape(format!(
                "feature map {c}×{h}×{w} needs {len} values, got {}",
                data.len()
            )));
        }
        Ok(FeatureMap { c, h, w, data })
    }

    /// All zeros.
    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        FeatureMap { c, h, w, data: vec![0.0; c * h * w] }
    }

    /// Channel `i` as an H·W slice.
    pub fn channel(&self, i: usize) -> &[f32] {
        &self.data[i * self.h * self.w..(i + 1) * self.h * self.w]
    }

    /// Relative error ‖self − reference‖ / ‖reference‖ (f64 accumulation); 0 when both are zero.
    pub fn rel_error(&self, reference: &FeatureMap) -> Result<f64> {
        if (self.c, self.h, self.w) != (reference.c, reference.h, reference.w) {
            return Err(Error::Shape(format!(
                "cannot compare {}×{}×{} with {}×{}×{}",
                self.c, self.h, self.w, reference.c, reference.h, reference.w
            )));
        }
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (&a, &b) in self.data.iter().zip(&reference.data) {
            let d = a as f64 - b as f64;
            num += d * d;
            den += (b as f64) * (b as f64);
        }
        Ok(if den == 0.0 { num.sqrt() } else { (num / den).sqrt() })
    }
}

/// Product of dimensions with overflow and [`MAX_ELEMENTS`] checks; zero-size is an error.
pub fn checked_len(dims: &[usize]) -> Result<usize> {
    let mut len: usize = 1;
    for &d in dims {
        if d == 0 {
            return Err(Error::Shape(format!("zero-size dimension in shape {dims:?}")));
        }
        len = len
            .checked_mul(d)
            .filter(|&l| l <= MAX_ELEMENTS)
            .ok_or_else(|| Error::TooLarge(format!("shape {dims:?} exceeds {MAX_ELEMENTS} elements")))?;
    }
    Ok(len)
}

/// Which factor comes first in a decoupled layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Order {
    /// Depthwise then pointwise (MobileNet order); slices are per input channel (N × K²).
    #[default]
    DwPw,
    /// Pointwise then depthwise (the official code's default); slices are per output channel (C × K²).
    PwDw,
}

impl Order {
    /// `dw-pw` or `pw-dw`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Order::DwPw => "dw-pw",
            Order::PwDw => "pw-dw",
        }
    }
    /// `DW→PW` or `PW→DW`.
    pub fn label(&self) -> &'static str {
        match self {
            Order::DwPw => "DW→PW",
            Order::PwDw => "PW→DW",
        }
    }
    /// The other ordering.
    pub fn flip(&self) -> Order {
        match self {
            Order::DwPw => Order::PwDw,
            Order::PwDw => Order::DwPw,
        }
    }
}

impl std::str::FromStr for Order {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dw-pw" | "dwpw" | "DwPw" => Ok(Order::DwPw),
            "pw-dw" | "pwdw" | "PwDw" => Ok(Order::PwDw),
            _ => Err(Error::Param(format!("unknown order '{s}' (expected dw-pw or pw-dw)"))),
        }
    }
}
