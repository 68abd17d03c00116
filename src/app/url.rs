//! The view's state in the address bar: one struct ↔ query string, clamped on the way in.

use crate::decouple::ThresholdRule;
use crate::Order;
use serde::{Deserialize, Serialize};

/// Everything a shared link reproduces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UiState {
    /// Example id.
    pub example: String,
    /// Terms kept.
    pub t: usize,
    /// Ordering (`dw-pw` / `pw-dw`).
    pub order: String,
    /// Energy threshold τ.
    pub tau: f64,
    /// Threshold rule: `mean` or `max`.
    pub rule: String,
    /// Slice shown in the filters view.
    pub channel: usize,
    /// Output channel shown in the feature maps.
    pub out: usize,
    /// Built-in image id (or `upload`).
    pub image: String,
}

impl Default for UiState {
    fn default() -> Self {
        UiState {
            example: crate::engine::EXAMPLES[0].id.to_string(),
            t: 3,
            order: "dw-pw".into(),
            tau: 0.9,
            rule: "mean".into(),
            channel: 0,
            out: 0,
            image: super::image::IMAGES[0].0.to_string(),
        }
    }
}

impl UiState {
    /// Parses a query string (with or without `?`); unknown or bad values fall back to defaults,
    /// numbers are clamped to safe ranges (T and channels are clamped again once the layer is known).
    pub fn from_query(q: &str) -> Self {
        let q = q.trim_start_matches('?');
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        let mut s = UiState::default();
        for (k, v) in pairs {
            match k.as_str() {
                "example" if crate::engine::EXAMPLES.iter().any(|e| e.id == v) => s.example = v,
                "t" => s.t = v.parse::<usize>().unwrap_or(s.t).clamp(1, 4096),
                "order" if v.parse::<Order>().is_ok() => s.order = v,
                "tau" => {
                    if let Ok(x) = v.parse::<f64>() {
                        if x.is_finite() {
                            s.tau = x.clamp(0.5, 1.0);
                        }
                    }
                }
                "rule" if v == "mean" || v == "max" => s.rule = v,
                "channel" => s.channel = v.parse::<usize>().unwrap_or(0).min(1 << 16),
                "out" => s.out = v.parse::<usize>().unwrap_or(0).min(1 << 16),
                "image" if super::image::IMAGES.iter().any(|i| i.0 == v) => s.image = v,
                _ => {}
            }
        }
        s
    }

    /// The query string (with `?`).
    pub fn to_query(&self) -> String {
        format!("?{}", serde_urlencoded::to_string(self).unwrap_or_default())
    }

    /// The ordering.
    pub fn order(&self) -> Order {
        self.order.parse().unwrap_or_default()
    }

    /// The threshold rule.
    pub fn rule(&self) -> ThresholdRule {
        if self.rule == "max" {
            ThresholdRule::Max
        } else {
            ThresholdRule::Mean
        }
    }
}
