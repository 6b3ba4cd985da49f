//! Integration tests: each starts the real `offer-bandit` binary on an
//! ephemeral port with its own data directory and talks real gRPC to it.
#![allow(unreachable_pub)] // test helpers are shared between modules

mod abuse;
mod abuse_http;
mod bad_input;
mod budgets;
mod control;
mod crash;
mod crash_log;
mod dashboard;
mod erasure;
mod error_contract;
mod exactly_once;
mod examples;
mod explain;
mod fallback;
mod gateway;
mod grpcurl;
mod learned_prior;
mod learning;
mod live_admin;
mod live_config;
mod logs;
mod metrics;
mod offer_features;
mod overload;
mod persistence;
#[cfg(target_os = "linux")]
mod priority;
mod privacy;
mod probes;
mod security;
mod shutdown;
mod storage;
mod support;
mod upgrades;
mod uplift;
