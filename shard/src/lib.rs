//! chronoshard-shard: the per-core storage engine.
//!
//! One instance per shard, driven only by its own core: row batches in, the write-ahead log
//! (O_DIRECT, group commit), the memtable, columnar segments, compaction and retention, and the
//! mesh messages other shards send it. No HTTP and no SQL text live here. The engine arrives with
//! the ingest issue; this crate is the place it is built in, kept separate so that the engine's
//! crash tests run without the server.
