//! The page's side of a worker's requests as a pure state machine: ids, what is in flight, what
//! waits, and which answers are stale. The host (`src/app/client.rs`) posts what it is told to.
//!
//! Per [`RequestKind`], at most one request is in flight and one waits; a newer waiting request
//! replaces an older one (its attachment, the user's file, is dropped). An answer whose id is
//! older than the newest request of its kind is stale: it frees the slot but is not delivered.
//! Requests are held until the worker says [`ResponseBody::Ready`] (messages posted before its
//! handler is installed would be lost).

use crate::protocol::{Request, RequestBody, RequestKind, Response, ResponseBody};
use std::collections::HashMap;

/// What the host does with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Post {
    /// Post it to the worker now (with its attachment, if one was given).
    Send(Request),
    /// It will never be sent: drop its attachment.
    Forget(u64),
}

#[derive(Debug, Default)]
struct KindState {
    /// Id of the newest request sent or waiting for this kind.
    newest: u64,
    /// Id of the request in flight, if any.
    in_flight: Option<u64>,
    /// The newest request not sent yet (because one is in flight).
    waiting: Option<Request>,
}

/// The requests of one worker (see the module's documentation).
#[derive(Debug)]
pub struct RequestBook {
    ready: bool,
    unsent: Vec<Request>,
    next_id: u64,
    kinds: HashMap<RequestKind, KindState>,
    kind_of: HashMap<u64, RequestKind>,
}

impl Default for RequestBook {
    fn default() -> Self {
        RequestBook::new()
    }
}

impl RequestBook {
    /// A book for a worker that has not said it is ready; ids start at 1 (0 is the worker's own).
    pub fn new() -> Self {
        RequestBook {
            ready: false,
            unsent: Vec::new(),
            next_id: 1,
            kinds: HashMap::new(),
            kind_of: HashMap::new(),
        }
    }

    /// A new request: its id, and what to post (nothing while one of its kind is in flight).
    pub fn send(&mut self, body: RequestBody) -> (u64, Vec<Post>) {
        let id = self.next_id;
        self.next_id += 1;
        let kind = body.kind();
        let req = Request { id, body };
        let state = self.kinds.entry(kind).or_default();
        state.newest = id;
        let mut posts = Vec::new();
        if state.in_flight.is_some() {
            if let Some(old) = state.waiting.replace(req) {
                posts.push(Post::Forget(old.id));
            }
        } else {
            state.in_flight = Some(id);
            self.kind_of.insert(id, kind);
            posts.extend(self.post(req));
        }
        (id, posts)
    }

    /// An answer from the worker: whether to deliver it, and what to post now (the requests
    /// held until the worker was ready; the waiting request of a kind whose answer came).
    pub fn on_response(&mut self, resp: &Response) -> (bool, Vec<Post>) {
        if resp.body == ResponseBody::Ready {
            self.ready = true;
            return (false, std::mem::take(&mut self.unsent).into_iter().map(Post::Send).collect());
        }
        let Some(&kind) = self.kind_of.get(&resp.id) else {
            // The worker's own messages (id 0) are delivered; answers to nothing known are not.
            return (resp.id == 0, Vec::new());
        };
        let newest = self.kinds.get(&kind).map_or(0, |s| s.newest);
        let mut posts = Vec::new();
        if is_final(&resp.body) {
            self.kind_of.remove(&resp.id);
            let next = self.kinds.get_mut(&kind).and_then(|s| {
                s.in_flight = None;
                s.waiting.take()
            });
            if let Some(req) = next {
                if let Some(s) = self.kinds.get_mut(&kind) {
                    s.in_flight = Some(req.id);
                }
                self.kind_of.insert(req.id, kind);
                posts.extend(self.post(req));
            }
        }
        (resp.id >= newest, posts)
    }

    /// Whether a request of `kind` is in flight or waiting.
    pub fn busy(&self, kind: RequestKind) -> bool {
        self.kinds.get(&kind).is_some_and(|s| s.in_flight.is_some() || s.waiting.is_some())
    }

    /// Posts now, or holds the request until the worker is ready.
    fn post(&mut self, req: Request) -> Option<Post> {
        if self.ready {
            Some(Post::Send(req))
        } else {
            self.unsent.push(req);
            None
        }
    }
}

/// Whether an answer is the last for its request (progress, partial answers and a comparison's
/// rows are not).
pub fn is_final(body: &ResponseBody) -> bool {
    !matches!(body, ResponseBody::Progress { .. } | ResponseBody::Partial(_) | ResponseBody::CompareRow(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndlab_core::layer::Order;

    fn forward(t: usize) -> RequestBody {
        RequestBody::Forward { t, order: Order::DwPw, out_channel: 0 }
    }

    fn answer(id: u64) -> Response {
        Response { id, body: ResponseBody::Error { message: "done".into() } }
    }

    fn sent(posts: &[Post]) -> Vec<u64> {
        posts
            .iter()
            .filter_map(|p| match p {
                Post::Send(r) => Some(r.id),
                Post::Forget(_) => None,
            })
            .collect()
    }

    #[test]
    fn requests_wait_for_ready_then_go_in_order() {
        let mut b = RequestBook::new();
        let (a, p) = b.send(RequestBody::Slice { order: Order::DwPw, slice: 0 });
        assert!(p.is_empty(), "not ready yet");
        let (c, _) = b.send(forward(2));
        assert_eq!((a, c), (1, 2));
        let (deliver, p) = b.on_response(&Response { id: 0, body: ResponseBody::Ready });
        assert!(!deliver);
        assert_eq!(sent(&p), vec![1, 2]);
    }

    #[test]
    fn one_in_flight_one_waiting_per_kind_and_the_newest_wins() {
        let mut b = RequestBook::new();
        b.on_response(&Response { id: 0, body: ResponseBody::Ready });
        assert_eq!(sent(&b.send(forward(1)).1), vec![1]);
        assert!(b.send(forward(2)).1.is_empty(), "waits behind 1");
        let (_, p) = b.send(forward(3));
        assert_eq!(p, vec![Post::Forget(2)], "3 replaces the waiting 2");
        // Another kind is independent.
        assert_eq!(sent(&b.send(RequestBody::OutputErrorCurve { order: Order::DwPw }).1), vec![4]);
        // Progress of 1 is stale (3 is newer) and frees nothing.
        let progress = Response { id: 1, body: ResponseBody::Progress { stage: "x".into(), fraction: 0.5 } };
        assert_eq!(b.on_response(&progress), (false, vec![]));
        // 1's answer is stale, and sends 3.
        let (deliver, p) = b.on_response(&answer(1));
        assert!(!deliver);
        assert_eq!(sent(&p), vec![3]);
        assert!(b.busy(RequestKind::Forward));
        let (deliver, p) = b.on_response(&answer(3));
        assert!(deliver && p.is_empty());
        assert!(!b.busy(RequestKind::Forward));
        // The worker's own answers (id 0) are delivered; unknown ids are not.
        assert!(b.on_response(&answer(0)).0);
        assert!(!b.on_response(&answer(99)).0);
    }

    #[test]
    fn partial_answers_are_delivered_and_keep_the_slot() {
        let mut b = RequestBook::new();
        b.on_response(&Response { id: 0, body: ResponseBody::Ready });
        b.send(RequestBody::LoadBuiltinImage { image: "camera".into() });
        assert!(b.send(RequestBody::LoadBuiltinImage { image: "chelsea".into() }).1.is_empty());
        let partial = Response { id: 1, body: ResponseBody::Partial(Box::new(ResponseBody::Ready)) };
        assert_eq!(b.on_response(&partial), (false, vec![]), "stale: 2 is newer");
        assert_eq!(sent(&b.on_response(&answer(1)).1), vec![2]);
        let partial = Response { id: 2, body: ResponseBody::Partial(Box::new(ResponseBody::Ready)) };
        assert_eq!(b.on_response(&partial), (true, vec![]));
        assert!(b.busy(RequestKind::Image));
    }
}
