//! Integration tests: each starts the real binary on 127.0.0.1 with a fresh data directory and
//! speaks HTTP to it. One test binary, one module per area.

mod chunked;
mod common;
mod crash;
mod ddl;
mod golden;
mod hostile;
mod http;
mod lifecycle;
mod scatter;
mod segments;
mod shard_aggregate;
mod sql;
mod write;
