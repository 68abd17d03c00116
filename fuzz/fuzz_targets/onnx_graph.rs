//! Fuzz target: arbitrary bytes through `ndlab_io::onnx_graph`. Every answer is Ok or Err, never a
//! panic; and a model that reads obeys the writer's laws: no edits give back the same bytes, and
//! every node re-encoded from the IR reads back the same model.
#![no_main]

use ndlab_io::onnx_graph::{opset, read_model, rewrite, GraphEdit, NodeRef};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = opset(data);
    let Ok(model) = read_model(data) else { return };
    let same = rewrite(data, &GraphEdit::default()).expect("a model that reads is rewritten");
    assert!(same == data, "no edits changed the bytes");
    let replace = model
        .graph
        .nodes
        .iter()
        .zip(&model.file_index)
        .map(|(n, &i)| (NodeRef::Index(i), vec![n.clone()]))
        .collect();
    let out = rewrite(data, &GraphEdit { replace, ..Default::default() }).expect("nodes re-encoded");
    let again = read_model(&out).expect("a re-encoded model reads");
    // Debug, not ==: a NaN attribute reads back as NaN.
    assert_eq!(format!("{again:?}"), format!("{model:?}"), "re-encoded nodes read back differently");
});
