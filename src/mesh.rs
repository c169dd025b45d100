//! The mesh: bounded channels from every shard to every shard's inbox.
//!
//! Messages carry only owned, `Send` data (row batches, `Arc` snapshots, `Arc` plan fragments)
//! and a reply channel.
//! The channels are runtime-agnostic (async-channel), and a glommio task waiting on one is woken
//! from another thread. Each inbox is bounded: a sender waits (asynchronously, never blocking
//! its reactor) when the owner is behind, which is the back-pressure between shards. An inbox is
//! drained by a task that never waits on another shard, so no cycle of waits can form.

use std::sync::Arc;

use chronoshard_shard::batch::{Delete, WriteBatch};

use crate::catalog::{Catalog, CatalogChange, CatalogError};
use crate::ingest::EngineFailure;
use crate::query::FragmentTask;

/// Messages one inbox can hold before senders wait.
pub const INBOX_CAPACITY: usize = 256;

pub type Reply<T> = async_channel::Sender<T>;

/// What one shard asks of another.
pub enum ShardMsg {
    /// Append these rows to your WAL and memtable; reply when durable.
    Write {
        batch: WriteBatch,
        reply: Reply<Result<(), EngineFailure>>,
    },
    /// Log this delete in your WAL and apply it to your memtable; reply with the points removed
    /// once durable.
    Delete {
        delete: Delete,
        reply: Reply<Result<usize, EngineFailure>>,
    },
    /// (Shard 0 only.) Apply this catalog change (a write's missing columns, or DDL), persist
    /// it, broadcast it; reply with the snapshot that has it.
    CatalogChange {
        change: CatalogChange,
        reply: Reply<Result<Arc<Catalog>, CatalogError>>,
    },
    /// A new catalog snapshot from shard 0.
    Catalog(Arc<Catalog>),
    /// A connection another shard accepted and hands over to balance the load.
    Connection(glommio::net::AcceptedTcpStream),
    /// Run your partition of a query's plan fragment and stream its batches back.
    Fragment(FragmentTask),
}

/// Senders to every shard's inbox, indexed by shard id.
#[derive(Clone, Debug)]
pub struct Mesh {
    inboxes: Arc<Vec<async_channel::Sender<ShardMsg>>>,
}

/// Why a message could not be delivered: the shard is gone (stopping or crashed).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not accepting messages (stopping)")]
pub struct MeshClosed(pub usize);

impl Mesh {
    /// Creates the channels; returns the mesh and each shard's receiving end.
    pub fn new(shards: usize) -> (Mesh, Vec<async_channel::Receiver<ShardMsg>>) {
        let (senders, receivers) = (0..shards)
            .map(|_| async_channel::bounded(INBOX_CAPACITY))
            .unzip();
        (
            Mesh {
                inboxes: Arc::new(senders),
            },
            receivers,
        )
    }

    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Whether both handles are of the same mesh (one server's shards).
    pub fn same(&self, other: &Mesh) -> bool {
        Arc::ptr_eq(&self.inboxes, &other.inboxes)
    }

    pub async fn send(&self, shard: usize, msg: ShardMsg) -> Result<(), MeshClosed> {
        self.inboxes[shard]
            .send(msg)
            .await
            .map_err(|_| MeshClosed(shard))
    }

    /// Sends a message and waits for its reply.
    pub async fn ask<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Reply<T>) -> ShardMsg,
    ) -> Result<T, MeshClosed> {
        let (tx, rx) = async_channel::bounded(1);
        self.send(shard, make(tx)).await?;
        rx.recv().await.map_err(|_| MeshClosed(shard))
    }
}

/// The owner shard of a series: a stable 64-bit hash of its key, modulo the shard count.
/// The hash is part of the on-disk contract (a shard's WAL holds only its own series): the test
/// below pins its value.
pub fn series_hash(tenant: &str, database: &str, table: &str, tags: &[(&str, &str)]) -> u64 {
    let mut h = KeyHasher::new();
    for part in [tenant, database, table] {
        h.write_part(part.as_bytes());
    }
    for (k, v) in tags {
        h.write_part(k.as_bytes());
        h.write_part(v.as_bytes());
    }
    h.finish()
}

pub fn owner_of(hash: u64, shards: usize) -> usize {
    (hash % shards as u64) as usize
}

/// Eight bytes at a time (a multiply-rotate round per word, each part closed by its length so
/// ("ab","c") and ("a","bc") differ), then a splitmix64 finalizer so the low bits the modulo uses
/// are well mixed. Hashing a TSBS key byte by byte cost a tenth of the whole write path.
struct KeyHasher(u64);

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

impl KeyHasher {
    fn new() -> KeyHasher {
        KeyHasher(0x243f_6a88_85a3_08d3)
    }

    fn round(&mut self, word: u64) {
        self.0 = (self.0 ^ word.wrapping_mul(K2))
            .rotate_left(29)
            .wrapping_mul(K1);
    }

    fn write_part(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.round(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.round(u64::from_le_bytes(w));
        }
        self.round(bytes.len() as u64 | 1 << 63);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_spreads() {
        // Pinned: changing the hash would move series between shards of existing data dirs.
        assert_eq!(
            series_hash("cnosdb", "public", "cpu", &[("host", "a")]),
            1_434_445_365_316_323_933
        );
        let mut counts = [0usize; 2];
        for i in 0..1000 {
            let host = format!("host_{i}");
            counts[owner_of(
                series_hash("cnosdb", "public", "cpu", &[("hostname", &host)]),
                2,
            )] += 1;
        }
        assert!(counts[0] > 400 && counts[1] > 400, "{counts:?}");
        assert_ne!(
            series_hash("a", "b", "c", &[("d", "e")]),
            series_hash("a", "b", "c", &[("de", "")])
        );
        assert_ne!(
            series_hash("a", "b", "c", &[("d", "e\0")]),
            series_hash("a", "b", "c", &[("d", "e")])
        );
    }
}
