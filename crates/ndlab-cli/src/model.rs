//! Model files on the command line: `ndlab list FILE`, and `--layer NAME [--fold-bn] [--layout L]` for
//! `report` and `apply` (any format of [`ndlab_io::formats`]; plain `.npy` kernels work as before).

use super::{in_file, split_args, usage_err, Host};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvGeometry, Kernel};
use ndlab_io::formats::{self, LayerEntry, Layout};
use ndlab_io::npy::read_npy;
use std::fmt::Write as _;

/// Which layer of a model file to use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Source {
    /// `--layer NAME` (needed when a file has several conv layers).
    pub layer: Option<String>,
    /// `--layout oihw|hwio` for raw arrays.
    pub layout: Layout,
    /// `--fold-bn`: fold the BatchNorm that follows the conv.
    pub fold_bn: bool,
    /// True when --stride/--padding/--dilation/--groups were given (they override the file's).
    pub explicit_geometry: bool,
}

impl Source {
    /// Reads `--layer`, `--layout`, `--fold-bn` and whether geometry flags were given.
    pub(super) fn from_args(a: &super::ArgList) -> Result<Self> {
        let layout = match a.get("--layout") {
            None => Layout::Oihw,
            Some(v) => v.parse().map_err(|e: Error| usage_err(super::strip(&e)))?,
        };
        Ok(Source {
            layer: a.get("--layer").map(str::to_string),
            layout,
            fold_bn: a.switches.iter().any(|s| s == "--fold-bn"),
            explicit_geometry: ["--stride", "--padding", "--dilation", "--groups"]
                .iter()
                .any(|f| a.get(f).is_some()),
        })
    }
}

/// Options of `ndlab list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOpts {
    /// The model file.
    pub file: String,
    /// Layout of raw arrays.
    pub layout: Layout,
}

/// Parses `ndlab list FILE [--layout oihw|hwio]`.
pub(super) fn parse_list(args: &[String]) -> Result<ListOpts> {
    let a = split_args(args, &[], &["--layout"])?;
    let src = Source::from_args(&a)?;
    Ok(ListOpts { file: a.one_file("model")?, layout: src.layout })
}

/// One line per conv layer.
fn line(l: &LayerEntry) -> String {
    let [n, c, kh, kw] = l.shape;
    let mut s = format!("{}  {n}×{c}×{kh}×{kw} {}", l.name, l.dtype);
    match &l.geometry {
        Some(g) => {
            let p = g.padding;
            let _ = write!(
                s,
                "  stride {}×{}  padding t{} l{} b{} r{}  dilation {}×{}  groups {}",
                g.stride.0,
                g.stride.1,
                p.top,
                p.left,
                p.bottom,
                p.right,
                g.dilation.0,
                g.dilation.1,
                g.groups
            );
        }
        None => s.push_str("  stride/padding/dilation/groups: not in the file"),
    }
    if let Some(a) = &l.auto_pad {
        let _ = write!(s, "  auto_pad {a}");
    }
    let _ = write!(s, "  bias {}", if l.bias.is_some() { "yes" } else { "no" });
    match &l.bn {
        Some(b) => {
            let _ = write!(s, "  BN {} (fold with --fold-bn)", b.name);
        }
        None => s.push_str("  BN no"),
    }
    if let Some(note) = &l.note {
        let _ = write!(s, "  ({note})");
    }
    s
}

/// `ndlab list`: the format, one line per conv layer, then the skipped tensors with reasons.
pub fn list(o: &ListOpts, host: &mut dyn Host) -> Result<String> {
    let bytes = host.read(&o.file)?;
    let listing = formats::inspect(&bytes, &o.file, o.layout).map_err(|e| in_file(&o.file, e))?;
    let l = formats::list_layers(&bytes, &o.file, o.layout).map_err(|e| in_file(&o.file, e))?;
    let mut s = format!("{}: {}, {} conv layer(s)\n", o.file, listing.format.label(), l.len());
    for e in &l {
        s.push_str(&line(e));
        s.push('\n');
    }
    for k in &listing.skipped {
        let _ = writeln!(s, "skipped {}: {}", k.name, k.reason);
    }
    Ok(s)
}

/// A loaded kernel with the bias and geometry the file gives.
pub(super) struct Loaded {
    pub kernel: Kernel,
    pub bias: Option<Vec<f32>>,
    pub geometry: Option<ConvGeometry>,
}

/// Loads the kernel of `path`: a plain `.npy` as before; any other file (or any `--layer`) through
/// [`formats::load_layer`]. A file with one conv layer needs no `--layer`.
pub(super) fn load(host: &mut dyn Host, path: &str, src: &Source) -> Result<Loaded> {
    let bytes = host.read(path)?;
    let is_npy = bytes.starts_with(b"\x93NUMPY");
    if is_npy && src.layer.is_none() && !src.fold_bn {
        let a = read_npy(&bytes).map_err(|e| in_file(path, e))?;
        let kernel = match src.layout {
            Layout::Oihw => a.into_kernel(),
            Layout::Hwio => match a.shape[..] {
                [kh, kw, c, n] => Kernel::from_hwio(kh, kw, c, n, &a.data),
                _ => a.into_kernel(),
            },
        }
        .map_err(|e| in_file(path, e))?;
        return Ok(Loaded { kernel, bias: None, geometry: None });
    }
    let layers = formats::list_layers(&bytes, path, src.layout).map_err(|e| in_file(path, e))?;
    let name = match (&src.layer, layers.as_slice()) {
        (Some(n), _) => n.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => {
            return Err(usage_err(format!(
                "{path} has {} conv layers: pick one with --layer NAME (see ndlab list {path})",
                layers.len()
            )))
        }
    };
    let geometry = layers.iter().find(|l| l.name == name || l.weight == name).and_then(|l| l.geometry);
    let layer =
        formats::load_layer(&bytes, path, &name, src.layout, src.fold_bn).map_err(|e| in_file(path, e))?;
    Ok(Loaded { kernel: layer.kernel, bias: layer.bias, geometry })
}
