//! The cost model (METHOD.md "Costs"): multiply-accumulates and parameters of the regular layer
//! and of both decoupled orderings, speed-up and break-even T.
