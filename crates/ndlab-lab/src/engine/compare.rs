//! The engine's answer to [`RequestBody::Compare`](crate::protocol::RequestBody::Compare): the
//! related decompositions of the loaded layer at an equal cost, with output errors on the prepared
//! input ([`ndlab_core::relatives::session`]). Rows and progress go out through `progress` as they are ready.

use super::{no_layer, Engine};
use crate::protocol::{Response, ResponseBody};
use ndlab_core::error::Result;
use ndlab_core::relatives::session::{self, CompareEvent, CompareInput, CompareReport, CompareRequest};

impl Engine {
    /// Runs a comparison and returns its final response (the report, or an error).
    pub fn handle_compare(
        &mut self,
        id: u64,
        req: &CompareRequest,
        progress: &mut dyn FnMut(Response),
    ) -> Response {
        let body = match self.compare(id, req, progress) {
            Ok(r) => ResponseBody::Compare(Box::new(r)),
            Err(e) => ResponseBody::Error { message: e.to_string() },
        };
        Response { id, body }
    }

    fn compare(
        &mut self,
        id: u64,
        req: &CompareRequest,
        progress: &mut dyn FnMut(Response),
    ) -> Result<CompareReport> {
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        // The original layer's output on the prepared input (none yet when no forward ran on it).
        if let Some(p) = self.prepared.as_mut().filter(|p| p.reference.is_none()) {
            p.reference = Some(ndlab_core::conv::layer_forward(&p.input, &l.layer)?);
        }
        let input = CompareInput {
            layer: &l.layer,
            nd: &l.decs,
            activations: self.prepared.as_ref().and_then(|p| Some((&p.input, p.reference.as_ref()?))),
            clock: self.clock,
        };
        let mut emit = |ev: CompareEvent| {
            let body = match ev {
                CompareEvent::Progress(stage, fraction) => ResponseBody::Progress { stage, fraction },
                CompareEvent::Row(r) => ResponseBody::CompareRow(Box::new(r)),
            };
            progress(Response { id, body });
            true
        };
        session::run(&input, req, &mut emit)
    }
}
