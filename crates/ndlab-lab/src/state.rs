//! The app's state: every user-visible setting in one serde struct, to and from the URL query.
//!
//! Parsing never fails and never panics: unknown keys are ignored, bad values fall back to the
//! defaults, numbers are clamped to fixed bounds here and to the loaded layer by
//! [`AppState::clamp_to`] (the URL must not bypass the controls' limits).

use crate::examples;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::layer::Order;
use serde::{Deserialize, Serialize};

/// Largest T accepted from a URL before the layer is known (K² of an 11×11 kernel is 121).
pub const MAX_T: usize = 1024;
/// Largest channel index accepted from a URL before the layer is known.
pub const MAX_CHANNEL: usize = 1 << 16;
/// Longest query parsed; a longer one is ignored as a whole (defaults).
pub const MAX_QUERY_LEN: usize = 8192;
/// Speed-up bounds of the relatives comparison's budget (regular MACs / X).
pub const SPEEDUP_RANGE: (f64, f64) = (1.0, 64.0);
/// Default speed-up of the relatives comparison.
pub const DEFAULT_SPEEDUP: f64 = 4.0;
/// Longest id (example or image) accepted.
pub const MAX_ID_LEN: usize = 64;

/// Which view the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum View {
    /// The single-layer lab (with the whole network below it).
    #[default]
    Lab,
    /// The whole network alone.
    Network,
}

/// How the whole network's per-layer T is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetStrategy {
    /// One T for all.
    Uniform,
    /// The energy threshold with the paper's mean rule.
    Mean,
    /// The energy threshold with the max rule.
    Max,
    /// A conv-MAC budget allocated by measured sensitivity.
    #[default]
    Budget,
}

impl NetStrategy {
    /// All of them, in the page's order.
    pub const ALL: [NetStrategy; 4] =
        [NetStrategy::Uniform, NetStrategy::Mean, NetStrategy::Max, NetStrategy::Budget];

    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            NetStrategy::Uniform => "uniform",
            NetStrategy::Mean => "mean",
            NetStrategy::Max => "max",
            NetStrategy::Budget => "budget",
        }
    }

    fn parse(v: &str) -> Option<Self> {
        NetStrategy::ALL.into_iter().find(|s| s.as_str() == v)
    }
}

/// Largest per-layer list of T accepted from a URL.
pub const MAX_NET_LAYERS: usize = 256;
/// Largest T of the whole-network view.
pub const MAX_NET_T: usize = 121;

/// The whole-network view's settings (the built-in network's; a user's network is not in the URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetState {
    /// How T is chosen.
    pub strategy: NetStrategy,
    /// The ordering.
    pub order: Order,
    /// T of [`NetStrategy::Uniform`].
    pub t: usize,
    /// τ of the threshold rules.
    pub tau: f64,
    /// Conv MACs divided by this ([`NetStrategy::Budget`]), in [`SPEEDUP_RANGE`].
    pub speedup: f64,
    /// Data-aware decoupling.
    pub aware: bool,
    /// T per layer set by hand (0 keeps a layer), overriding the strategy.
    pub ts: Option<Vec<usize>>,
}

impl Default for NetState {
    fn default() -> Self {
        NetState {
            strategy: NetStrategy::Budget,
            order: Order::PwDw,
            t: 4,
            tau: 0.9,
            speedup: 2.0,
            aware: true,
            ts: None,
        }
    }
}

impl NetState {
    /// The plan these settings ask for.
    pub fn request(&self) -> crate::network::messages::PlanRequest {
        use crate::network::Choice;
        let choice = match (&self.ts, self.strategy) {
            (Some(ts), _) => Choice::PerLayer(ts.clone()),
            (None, NetStrategy::Uniform) => Choice::Uniform(self.t),
            (None, NetStrategy::Mean) => Choice::Threshold(self.tau, ThresholdRule::Mean),
            (None, NetStrategy::Max) => Choice::Threshold(self.tau, ThresholdRule::Max),
            (None, NetStrategy::Budget) => Choice::Speedup(self.speedup),
        };
        crate::network::messages::PlanRequest { order: self.order, choice, data_aware: self.aware }
    }
}

/// Every user-visible setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppState {
    /// Id of the example layer ([`examples::catalogue`]); `upload` for a user's file.
    pub example: String,
    /// Terms per slice, 1..=full rank.
    pub t: usize,
    /// Ordering.
    pub order: Order,
    /// Energy threshold τ in (0, 1] that picks T, if set (then T follows it).
    pub tau: Option<f64>,
    /// How τ becomes T.
    pub rule: ThresholdRule,
    /// Slice index for the filter view (DW→PW: input channel; PW→DW: output channel).
    pub channel: usize,
    /// Output channel shown in the feature-map view.
    pub out_channel: usize,
    /// Id of the input image ([`examples::IMAGES`]).
    pub image: String,
    /// Budget of the relatives comparison as a speed-up X over the regular layer, in
    /// [`SPEEDUP_RANGE`].
    pub speedup: f64,
    /// Which view.
    pub view: View,
    /// The whole-network view's settings.
    pub net: NetState,
}

impl Default for AppState {
    fn default() -> Self {
        let ex = examples::default_example();
        AppState {
            example: ex.id.to_string(),
            t: ex.preset_t,
            order: ex.preset_order,
            tau: None,
            rule: ThresholdRule::Mean,
            channel: 0,
            out_channel: 0,
            image: examples::DEFAULT_IMAGE.to_string(),
            speedup: DEFAULT_SPEEDUP,
            view: View::Lab,
            net: NetState::default(),
        }
    }
}

/// Query value of a rule.
fn rule_str(r: ThresholdRule) -> &'static str {
    match r {
        ThresholdRule::Mean => "mean",
        ThresholdRule::Max => "max",
    }
}

/// An id made only of `[A-Za-z0-9_.-]`, at most [`MAX_ID_LEN`] long.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// An unsigned integer from a query value: plain digits, or a finite float rounded; clamped to
/// `lo..=hi`. `None` if it is not a number.
fn parse_count(v: &str, lo: usize, hi: usize) -> Option<usize> {
    let v = v.trim();
    if v.len() > 64 {
        return None;
    }
    if let Ok(n) = v.parse::<u64>() {
        return Some((n.min(hi as u64) as usize).max(lo));
    }
    let f = v.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Some(f.round().clamp(lo as f64, hi as f64) as usize)
}

/// Per-layer T from a query value (`4,4,0,3`): whole numbers each clamped to 0..=[`MAX_NET_T`],
/// at most [`MAX_NET_LAYERS`] of them; None when it is not such a list.
fn parse_ts(v: &str) -> Option<Vec<usize>> {
    if v.is_empty() || v.len() > 4 * MAX_NET_LAYERS {
        return None;
    }
    let ts: Option<Vec<usize>> = v.split(',').map(|x| parse_count(x, 0, MAX_NET_T)).collect();
    ts.filter(|t| !t.is_empty() && t.len() <= MAX_NET_LAYERS)
}

/// A speed-up from a query value: a finite number, clamped to [`SPEEDUP_RANGE`] and rounded to
/// two decimals (so the URL stays short and round-trips).
pub fn parse_speedup(v: &str) -> Option<f64> {
    let v = v.trim();
    if v.len() > 64 {
        return None;
    }
    let x = v.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Some(((x.clamp(SPEEDUP_RANGE.0, SPEEDUP_RANGE.1)) * 100.0).round() / 100.0)
}

impl AppState {
    /// The state as a URL query (no leading `?`), keys in a fixed order.
    pub fn to_query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("example", self.example.clone()),
            ("t", self.t.to_string()),
            ("order", self.order.as_str().to_string()),
        ];
        if let Some(tau) = self.tau {
            pairs.push(("tau", format!("{tau}")));
        }
        pairs.push(("rule", rule_str(self.rule).to_string()));
        pairs.push(("channel", self.channel.to_string()));
        pairs.push(("out", self.out_channel.to_string()));
        pairs.push(("image", self.image.clone()));
        pairs.push(("speedup", format!("{}", self.speedup)));
        if self.view == View::Network {
            pairs.push(("view", "network".into()));
        }
        // The whole network's settings where they differ from the defaults (short links).
        let (n, d) = (&self.net, NetState::default());
        if n.strategy != d.strategy {
            pairs.push(("net", n.strategy.as_str().into()));
        }
        if n.order != d.order {
            pairs.push(("net_order", n.order.as_str().into()));
        }
        if n.t != d.t {
            pairs.push(("net_t", n.t.to_string()));
        }
        if n.tau != d.tau {
            pairs.push(("net_tau", format!("{}", n.tau)));
        }
        if n.speedup != d.speedup {
            pairs.push(("net_speedup", format!("{}", n.speedup)));
        }
        if n.aware != d.aware {
            pairs.push(("net_aware", if n.aware { "1" } else { "0" }.into()));
        }
        if let Some(ts) = &n.ts {
            pairs.push(("net_ts", ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    /// A state from a URL query (with or without the leading `?`). Never fails: anything
    /// unknown or invalid is ignored and left at its default. When `t` is absent the example's
    /// preset T (and order, if `order` is absent too) apply.
    pub fn from_query(query: &str) -> AppState {
        let query = query.strip_prefix('?').unwrap_or(query);
        if query.len() > MAX_QUERY_LEN {
            return AppState::default();
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let mut s = AppState::default();
        let (mut t_set, mut order_set) = (false, false);
        for (k, v) in &pairs {
            match k.as_str() {
                "example" if valid_id(v) && examples::is_known_example(v) => s.example = v.clone(),
                "t" => {
                    if let Some(t) = parse_count(v, 1, MAX_T) {
                        s.t = t;
                        t_set = true;
                    }
                }
                "order" => {
                    if let Ok(o) = v.parse::<Order>() {
                        s.order = o;
                        order_set = true;
                    }
                }
                "tau" => s.tau = v.trim().parse::<f64>().ok().filter(|x| *x > 0.0 && *x <= 1.0),
                "rule" => match v.as_str() {
                    "mean" => s.rule = ThresholdRule::Mean,
                    "max" => s.rule = ThresholdRule::Max,
                    _ => {}
                },
                "channel" => s.channel = parse_count(v, 0, MAX_CHANNEL).unwrap_or(0),
                "out" => s.out_channel = parse_count(v, 0, MAX_CHANNEL).unwrap_or(0),
                "speedup" => {
                    if let Some(x) = parse_speedup(v) {
                        s.speedup = x;
                    }
                }
                "image" if valid_id(v) && examples::is_known_image(v) => s.image = v.clone(),
                "view" if v == "network" => s.view = View::Network,
                "net" => s.net.strategy = NetStrategy::parse(v).unwrap_or(s.net.strategy),
                "net_order" => s.net.order = v.parse().unwrap_or(s.net.order),
                "net_t" => s.net.t = parse_count(v, 1, MAX_NET_T).unwrap_or(s.net.t),
                "net_tau" => {
                    if let Some(x) = v.trim().parse::<f64>().ok().filter(|x| *x > 0.0 && *x <= 1.0) {
                        s.net.tau = (x * 1000.0).round() / 1000.0;
                    }
                }
                "net_speedup" => s.net.speedup = parse_speedup(v).unwrap_or(s.net.speedup),
                "net_aware" => s.net.aware = v != "0",
                "net_ts" => s.net.ts = parse_ts(v),
                _ => {}
            }
        }
        if let Some(ex) = examples::find(&s.example) {
            if !t_set {
                s.t = ex.preset_t;
            }
            if !order_set && !t_set {
                s.order = ex.preset_order;
            }
        }
        s
    }

    /// Clamps to a loaded layer: T to 1..=`full_rank`, the filter slice to `n_slices`, the
    /// feature-map channel to `n_out` (each at least 1).
    pub fn clamp_to(&mut self, full_rank: usize, n_slices: usize, n_out: usize) {
        self.t = self.t.clamp(1, full_rank.max(1));
        self.channel = self.channel.min(n_slices.max(1) - 1);
        self.out_channel = self.out_channel.min(n_out.max(1) - 1);
        if let Some(tau) = self.tau {
            if !(tau > 0.0 && tau <= 1.0) {
                self.tau = None;
            }
        }
    }

    /// True when every field is within its fixed bounds (what [`AppState::from_query`] guarantees).
    pub fn is_valid(&self) -> bool {
        valid_id(&self.example)
            && examples::is_known_example(&self.example)
            && valid_id(&self.image)
            && examples::is_known_image(&self.image)
            && (1..=MAX_T).contains(&self.t)
            && self.channel <= MAX_CHANNEL
            && self.out_channel <= MAX_CHANNEL
            && self.tau.is_none_or(|x| x > 0.0 && x <= 1.0)
            && (SPEEDUP_RANGE.0..=SPEEDUP_RANGE.1).contains(&self.speedup)
            && (1..=MAX_NET_T).contains(&self.net.t)
            && self.net.tau > 0.0
            && self.net.tau <= 1.0
            && (SPEEDUP_RANGE.0..=SPEEDUP_RANGE.1).contains(&self.net.speedup)
            && self.net.ts.as_ref().is_none_or(|t| {
                !t.is_empty() && t.len() <= MAX_NET_LAYERS && t.iter().all(|&x| x <= MAX_NET_T)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let s = AppState {
            example: "gaussian_64".into(),
            t: 5,
            order: Order::PwDw,
            tau: Some(0.95),
            rule: ThresholdRule::Max,
            channel: 17,
            out_channel: 3,
            image: "chelsea".into(),
            speedup: 8.5,
            view: View::Network,
            net: NetState {
                strategy: NetStrategy::Max,
                order: Order::DwPw,
                t: 3,
                tau: 0.85,
                speedup: 3.5,
                aware: false,
                ts: Some(vec![0, 4, 4, 3, 2, 2]),
            },
        };
        let q = s.to_query();
        assert_eq!(AppState::from_query(&q), s, "query {q}");
        assert_eq!(AppState::from_query(&format!("?{q}")), s);
        let d = AppState::default();
        assert_eq!(AppState::from_query(&d.to_query()), d);
        assert!(d.is_valid());
    }

    #[test]
    fn defaults_and_presets() {
        let d = AppState::from_query("");
        assert_eq!(d, AppState::default());
        assert_eq!(d.example, examples::default_example().id);
        // A known example without t takes its preset.
        let ex = examples::find("lowrank2_64").unwrap();
        let s = AppState::from_query("example=lowrank2_64");
        assert_eq!((s.t, s.order), (ex.preset_t, ex.preset_order));
    }

    #[test]
    fn hostile_values_fall_back_or_clamp() {
        let s = AppState::from_query(
            "t=1e99&order=sideways&tau=NaN&rule=min&channel=-4&out=1e400&image=<script>&example=../../etc",
        );
        assert_eq!(s.t, MAX_T);
        assert_eq!(s.order, AppState::default().order);
        assert_eq!(s.tau, None);
        assert_eq!(s.rule, ThresholdRule::Mean);
        assert_eq!(s.channel, 0);
        assert_eq!(s.out_channel, 0); // 1e400 is infinite as f64: not a number we accept
        assert_eq!(s.image, examples::DEFAULT_IMAGE);
        assert_eq!(s.example, examples::default_example().id);
        assert!(s.is_valid());
        assert_eq!(AppState::from_query("t=0").t, 1);
        assert_eq!(AppState::from_query("t=2.6").t, 3);
        assert_eq!(AppState::from_query("tau=1.5").tau, None);
        assert_eq!(AppState::from_query("tau=0").tau, None);
        assert_eq!(AppState::from_query("tau=0.9&zzz=1&t=4").tau, Some(0.9));
        assert_eq!(AppState::from_query("%ZZ=%%&&&==&t=4").t, 4);
        assert_eq!(AppState::from_query("speedup=0").speedup, 1.0);
        assert_eq!(AppState::from_query("speedup=1e9").speedup, 64.0);
        assert_eq!(AppState::from_query("speedup=NaN").speedup, DEFAULT_SPEEDUP);
        assert_eq!(AppState::from_query("speedup=-inf").speedup, DEFAULT_SPEEDUP);
        assert_eq!(AppState::from_query("speedup=4.354").speedup, 4.35);
        let net = AppState::from_query(
            "view=nope&net=all&net_t=9999&net_tau=2&net_speedup=1e9&net_ts=1,x,3&net_order=up",
        );
        assert_eq!(net.view, View::Lab);
        assert_eq!(net.net.strategy, NetStrategy::Budget);
        assert_eq!(net.net.t, MAX_NET_T);
        assert_eq!(net.net.tau, 0.9);
        assert_eq!(net.net.speedup, 64.0);
        assert_eq!(net.net.ts, None);
        assert_eq!(net.net.order, Order::PwDw);
        assert_eq!(AppState::from_query("net_ts=9,99999,0").net.ts, Some(vec![9, MAX_NET_T, 0]));
        assert_eq!(AppState::from_query(&format!("net_ts={}", "1,".repeat(300))).net.ts, None);
        let html = "image=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
        assert!(AppState::from_query(html).to_query().find('<').is_none());
    }

    #[test]
    fn huge_query_gives_defaults() {
        let q = format!("t=5&x={}", "a".repeat(MAX_QUERY_LEN));
        assert_eq!(AppState::from_query(&q), AppState::default());
        assert_eq!(AppState::from_query(&"t=5&".repeat(1000)).t, 5);
    }

    #[test]
    fn clamp_to_layer() {
        let mut s = AppState::from_query("t=50&channel=999&out=999");
        s.clamp_to(9, 256, 64);
        assert_eq!((s.t, s.channel, s.out_channel), (9, 255, 63));
        let mut s = AppState::from_query("t=3");
        s.clamp_to(0, 0, 0);
        assert_eq!((s.t, s.channel, s.out_channel), (1, 0, 0));
    }

    proptest! {
        #[test]
        fn arbitrary_queries_give_valid_states(q in ".{0,300}") {
            let s = AppState::from_query(&q);
            prop_assert!(s.is_valid());
            prop_assert_eq!(AppState::from_query(&s.to_query()), s);
        }

        #[test]
        fn arbitrary_values_give_valid_states(
            key in prop::sample::select(vec![
                "example", "t", "order", "tau", "rule", "channel", "out", "image", "speedup", "view", "net", "net_order",
                "net_t", "net_tau", "net_speedup", "net_aware", "net_ts",
            ]),
            v in "\\PC{0,80}",
        ) {
            let q = serde_urlencoded::to_string([(key, v.as_str())]).unwrap_or_default();
            let s = AppState::from_query(&q);
            prop_assert!(s.is_valid());
        }
    }
}
