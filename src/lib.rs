//! offer-bandit: decides which loyalty offer each customer sees, by Thompson
//! sampling, and learns from redemptions exactly once.
//!
//! The policies in [`policy`] are pure and shared with the `offer-sim`
//! simulator; [`engine`] runs the learning loop over [`store`]; [`service`]
//! and [`server`] put it on gRPC.

pub mod budget;
pub mod cli_output;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connections;
pub mod context;
pub mod customer;
pub mod dashboard;
pub mod decision;
pub mod decision_id;
pub mod engine;
pub mod error;
pub mod features;
pub mod gateway;
pub mod guard;
pub mod linalg;
pub mod metrics;
pub mod palette;
pub mod policy;
mod process;
pub mod proto;
pub mod readiness;
pub mod revisions;
pub mod rng;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
pub mod uplift;
pub mod web;
