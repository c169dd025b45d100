//! chronoshard-shard: the per-core storage engine.
//!
//! One instance per shard, driven only by its own core: row batches in (`batch`), the
//! write-ahead log (`wal`, O_DIRECT, group commit) over a narrow storage trait (`io`), the
//! memtable (`memtable`), the Parquet segments it is flushed to (`segment`) and the manifest
//! that lists them (`manifest`), all driven by the `engine`. No HTTP and no SQL text live here, so the engine's crash tests run
//! without the server.

pub mod aggregate;
pub mod batch;
pub mod engine;
pub mod io;
pub mod manifest;
pub mod memtable;
pub mod scan;
pub mod segment;
pub mod wal;
