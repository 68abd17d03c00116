//! Big files are read by range: a source that *claims* hundreds of megabytes (zeros, except for the
//! real header / graph bytes) is listed and its small layer loaded while the log of reads shows that
//! only the header and the chosen tensor were touched; a tensor over the stated limit is refused
//! before a byte of it is read.

use ndlab_core::Error;
use ndlab_io::formats::onnx::{AttributeProto, GraphProto, NodeProto, TensorProto};
use ndlab_io::formats::{inspect_source, load_layer_source, ByteSource, Layout, MAX_TENSOR_BYTES};
use prost::Message;
use std::cell::RefCell;

/// A file made of real byte runs and zero runs, logging every read.
struct Sparse {
    parts: Vec<(u64, Option<Vec<u8>>, u64)>, // (start, bytes or None for zeros, len)
    size: u64,
    log: RefCell<Vec<(u64, usize)>>,
}

impl Sparse {
    fn new() -> Self {
        Sparse { parts: Vec::new(), size: 0, log: RefCell::new(Vec::new()) }
    }
    fn bytes(&mut self, b: &[u8]) -> u64 {
        let at = self.size;
        self.parts.push((at, Some(b.to_vec()), b.len() as u64));
        self.size += b.len() as u64;
        at
    }
    fn zeros(&mut self, n: u64) -> u64 {
        let at = self.size;
        self.parts.push((at, None, n));
        self.size += n;
        at
    }
    /// Bytes read in total.
    fn read_total(&self) -> u64 {
        self.log.borrow().iter().map(|&(_, n)| n as u64).sum()
    }
    /// Bytes of `start..start+len` read (read-ahead windows of the scanners included).
    fn overlap(&self, start: u64, len: u64) -> u64 {
        let end = start + len;
        self.log.borrow().iter().map(|&(o, n)| (o + n as u64).min(end).saturating_sub(o.max(start))).sum()
    }
}

impl ByteSource for Sparse {
    fn len(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, len: usize) -> ndlab_core::Result<Vec<u8>> {
        if offset + len as u64 > self.size {
            return Err(Error::Format("past the end".into()));
        }
        self.log.borrow_mut().push((offset, len));
        let mut out = vec![0u8; len];
        for (start, bytes, n) in &self.parts {
            let (a, b) = (offset.max(*start), (offset + len as u64).min(start + n));
            if let (Some(bytes), true) = (bytes, a < b) {
                out[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&bytes[(a - start) as usize..(b - start) as usize]);
            }
        }
        Ok(out)
    }
}

const BIG: [usize; 4] = [1024, 1024, 11, 11]; // 126.9 M f32 = 507.5 MB > 256 MB
const SMALL: [usize; 4] = [16, 8, 3, 3];

fn small_values() -> Vec<f32> {
    (0..16 * 8 * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect()
}

fn le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A 500 MB safetensors file: `big` (zeros, never stored) then `small`.
fn safetensors() -> (Sparse, u64, u64) {
    let big_bytes = BIG.iter().product::<usize>() as u64 * 4;
    let small = le(&small_values());
    let header = format!(
        r#"{{"__metadata__":{{"format":"pt"}},"big":{{"dtype":"F32","shape":{BIG:?},"data_offsets":[0,{big_bytes}]}},"small":{{"dtype":"F32","shape":{SMALL:?},"data_offsets":[{big_bytes},{}]}}}}"#,
        big_bytes + small.len() as u64
    );
    let mut s = Sparse::new();
    s.bytes(&(header.len() as u64).to_le_bytes());
    s.bytes(header.as_bytes());
    let big_at = s.zeros(big_bytes);
    s.bytes(&small);
    (s, big_at, big_bytes)
}

#[test]
fn a_500_mb_safetensors_is_listed_and_its_small_layer_loaded_reading_only_kilobytes() {
    let (src, big_at, big_len) = safetensors();
    assert!(src.len() > 300_000_000);
    let listing = inspect_source(&src, "big.safetensors", Layout::Oihw).unwrap();
    let names: Vec<&str> = listing.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["big", "small"]);
    assert_eq!(listing.layers[0].shape, BIG);
    let layer = load_layer_source(&src, "big.safetensors", "small", Layout::Oihw, false).unwrap();
    assert_eq!(layer.kernel.data, small_values());
    assert_eq!(src.overlap(big_at, big_len), 0, "the big tensor was read: {:?}", src.log.borrow());
    println!("safetensors: {} bytes read of {}", src.read_total(), src.len());
    assert!(src.read_total() < 64 * 1024, "{} bytes read", src.read_total());
}

#[test]
fn a_tensor_over_the_limit_is_refused_before_it_is_read() {
    let (src, big_at, big_len) = safetensors();
    let e = load_layer_source(&src, "big.safetensors", "big", Layout::Oihw, false).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    let msg = e.to_string();
    // 1024·1024·11·11 f32 = 507 510 784 bytes.
    assert!(msg.contains("'big'") && msg.contains("507.5 MB") && msg.contains("256 MB limit"), "{msg}");
    assert!(big_len > MAX_TENSOR_BYTES);
    assert_eq!(src.overlap(big_at, big_len), 0);
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v.to_vec(), r#type: 7, ..Default::default() }
}

fn conv(name: &str, x: &str, w: &str) -> NodeProto {
    NodeProto {
        input: vec![x.into(), w.into()],
        output: vec![format!("{name}_out")],
        name: name.into(),
        op_type: "Conv".into(),
        attribute: vec![ints("strides", &[2, 2]), ints("pads", &[1, 0, 1, 2])],
    }
}

/// A 500 MB ONNX model whose big initializer's `raw_data` is a zero run, and whose small one holds
/// packed `float_data`.
fn onnx() -> (Sparse, u64, u64) {
    let big_len = BIG.iter().product::<usize>() as u64 * 4;
    let dims = |s: [usize; 4]| s.iter().map(|&d| d as i64).collect::<Vec<_>>();
    let big_head = TensorProto { dims: dims(BIG), data_type: 1, name: "W_big".into(), ..Default::default() }
        .encode_to_vec();
    let small = TensorProto {
        dims: dims(SMALL),
        data_type: 1,
        name: "W_small".into(),
        float_data: small_values(),
        ..Default::default()
    }
    .encode_to_vec();
    let nodes = GraphProto {
        node: vec![conv("conv_big", "x", "W_big"), conv("conv_small", "y", "W_small")],
        name: "g".into(),
        initializer: Vec::new(),
    }
    .encode_to_vec();
    // raw_data: key (9, length-delimited), varint length, then the zeros.
    let mut raw_key = vec![0x4a];
    prost::encoding::encode_varint(big_len, &mut raw_key);
    let big_msg_len = (big_head.len() + raw_key.len()) as u64 + big_len;
    let mut init_key = vec![0x2a];
    prost::encoding::encode_varint(big_msg_len, &mut init_key);
    let mut small_field = vec![0x2a];
    prost::encoding::encode_varint(small.len() as u64, &mut small_field);
    small_field.extend(&small);
    let graph_len = (nodes.len() + init_key.len()) as u64 + big_msg_len + small_field.len() as u64;
    let mut top = vec![0x08, 0x08, 0x3a]; // ir_version 8, graph
    prost::encoding::encode_varint(graph_len, &mut top);
    let mut s = Sparse::new();
    s.bytes(&top);
    s.bytes(&nodes);
    s.bytes(&init_key);
    s.bytes(&big_head);
    s.bytes(&raw_key);
    let big_at = s.zeros(big_len);
    s.bytes(&small_field);
    (s, big_at, big_len)
}

#[test]
fn a_500_mb_onnx_model_is_scanned_without_reading_its_raw_data() {
    let (src, big_at, big_len) = onnx();
    let listing = inspect_source(&src, "big.onnx", Layout::Oihw).unwrap();
    let names: Vec<&str> = listing.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["conv_big", "conv_small"]);
    let layer = load_layer_source(&src, "big.onnx", "conv_small", Layout::Oihw, false).unwrap();
    assert_eq!(layer.kernel.data, small_values());
    assert_eq!(layer.geometry.stride, (2, 2));
    assert_eq!((layer.geometry.padding.top, layer.geometry.padding.right), (1, 2));
    // The scanner reads ahead in 64 KB windows; the 500 MB payload itself is skipped.
    assert!(src.overlap(big_at, big_len) <= 128 << 10, "{}", src.overlap(big_at, big_len));
    println!("onnx: {} bytes read of {}", src.read_total(), src.len());
    assert!(src.read_total() < 1 << 20, "{} bytes read", src.read_total());
    let e = load_layer_source(&src, "big.onnx", "conv_big", Layout::Oihw, false).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)) && e.to_string().contains("'W_big'"), "{e}");
    assert!(src.overlap(big_at, big_len) <= 256 << 10);
}

#[test]
fn a_500_mb_safetensors_file_on_disk_loads_its_small_layer() {
    // A real sparse file in a temp dir: 500 MB of zeros between the header and the small tensor.
    let (mem, _, _) = safetensors();
    let dir = std::env::temp_dir().join(format!("ndlab-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.safetensors");
    // Only the small tensor is kept in memory; the file is written sparse via set_len.
    let head_len = mem.parts[0].2 + mem.parts[1].2;
    let head = mem.read_at(0, head_len as usize).unwrap();
    let small = le(&small_values());
    let f = std::fs::File::create(&path).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut f = f;
    f.write_all(&head).unwrap();
    f.seek(SeekFrom::Start(mem.len() - small.len() as u64)).unwrap();
    f.write_all(&small).unwrap();
    drop(f);
    /// Reads a file by range (as the worker reads a Blob).
    struct FileSource(std::fs::File, u64);
    impl ByteSource for FileSource {
        fn len(&self) -> u64 {
            self.1
        }
        fn read_at(&self, offset: u64, len: usize) -> ndlab_core::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let mut b = vec![0; len];
            self.0.read_exact_at(&mut b, offset).map_err(|e| Error::Format(e.to_string()))?;
            Ok(b)
        }
    }
    let file = std::fs::File::open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    let src = FileSource(file, len);
    let layer = load_layer_source(&src, "big.safetensors", "small", Layout::Oihw, false).unwrap();
    assert_eq!(layer.kernel.data, small_values());
    std::fs::remove_dir_all(&dir).unwrap();
}
