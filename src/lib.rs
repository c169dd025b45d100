//! chronoshard: a thread-per-core time-series database speaking CnosDB's REST API.
//!
//! The server crate: command line and configuration, HTTP/1.1 on httparse, routes and handlers,
//! the error-to-status mapping, metrics, and start-up/shutdown of the shards. The per-core storage
//! engine lives in the `chronoshard-shard` crate. `docs/architecture.md` is the map.
//!
//! Invariants kept here:
//! - a shard never blocks on another shard: state is per shard, shared only through messages and
//!   immutable snapshots (the metrics counters are per-shard atomics read at scrape);
//! - every buffer, body and queue has a bound from `config`;
//! - every error answer is JSON `{"error_code","error_message"}` with the status that
//!   `error::ApiError::status` gives it, and nowhere else decides a status.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod format;
pub mod http;
pub mod ingest;
pub mod lp;
pub mod mesh;
pub mod metrics;
pub mod query;
pub mod server;
