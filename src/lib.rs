//! offer-bandit: decides which loyalty offer each customer sees, by Thompson
//! sampling, and learns from redemptions exactly once.
//!
//! The policies in [`policy`] are pure and shared with the `offer-sim`
//! simulator; the engine ([`Engine`]) runs the learning loop over [`store`];
//! the gRPC handlers and [`serve`] put it on the network.
//!
//! # The surface
//!
//! Four modules are public because each is a coherent API of its own:
//! [`policy`] (the `Policy` trait and the models the simulator drives),
//! [`store`] (the storage traits, the sled backend, `MemoryStore`, backup and
//! migrations), [`config`] (the campaign file: its types, parsing,
//! validation, the demo campaigns) and [`proto`] (the generated gRPC types,
//! clients and servers); [`palette`] holds the colours the dashboard and
//! `offer-sim`'s reports share. Every other module is private: what the
//! binary, the simulator, the benches, the tests and the fuzz targets need
//! from them is re-exported below, grouped by what it is for. README.md's
//! layout map lists the same surface.

// Public modules: each a coherent API.
pub mod config;
pub mod palette;
pub mod policy;
pub mod proto;
pub mod store;

pub mod budget;
pub mod uplift;

// Private modules, reached through the re-exports below.
mod cli_output;
mod clock;
mod codec;
mod connections;
mod context;
mod customer;
mod dashboard;
mod decision;
mod decision_id;
mod engine;
mod error;
mod fast_map;
mod features;
mod gateway;
mod guard;
mod linalg;
mod metrics;
mod process;
mod readiness;
mod revisions;
mod rng;
mod server;
mod service;
mod status;
mod tls;
mod web;

// The engine handle: the learning loop over any `Storage`, in-process (the
// simulator drives it on a `MemoryStore` with a manual clock and a seeded
// generator).
pub use crate::{
    clock::{Clock, ManualClock, SystemClock},
    engine::{Engine, EngineOptions, Redeemed, Redemption, SelectRequest, Selection, Sources},
    error::Error,
    rng::RngSource,
};

// A visit's context and its encoding: what a policy reads.
pub use crate::{
    context::{Context, FeatureValue},
    features::{Buckets, Encoder, FeatureSpec, infer_specs},
    linalg::dot_sparse,
};

// Decisions and customers: ids, their signing keys, customer hashing, time.
pub use crate::{
    customer::CustomerKey,
    decision::now_ms,
    decision_id::{DecisionId, IdKeys},
};

// The server entry: options, the serve loop and its shutdown, request
// limits and validation (shared with the fuzz targets), access control.
pub use crate::{
    guard::{AuthScope, GuardConfig, MIN_TOKEN_BYTES, Role},
    server::{ServeOptions, free_bytes, serve, shutdown_signal},
    service::{Limits, validate_select, wire},
};

// Statistics the simulator and the tests check against the server's own:
// budget pacing, and the uplift interval clustered by customer and valid at
// every look.
pub use crate::{
    budget::{Pace, paced_allowance},
    uplift::{ClusterSums, Uplift, compare_sequential, sequential_multiplier},
};

// What both binaries share on the command line.
pub use crate::cli_output::{BROKEN_PIPE_EXIT, is_broken_pipe, quiet_on_broken_pipe};
