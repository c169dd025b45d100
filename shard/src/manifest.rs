//! The manifest: a shard's list of live segments, its WAL checkpoint and the deletes that still
//! apply to segments, replaced atomically as one file.
//!
//! # File
//!
//! `MANIFEST` in the shard's directory, written with aligned (`O_DIRECT`) writes:
//!
//! | offset | bytes | what |
//! | --- | --- | --- |
//! | 0 | 8 | magic `CSMANIF1` |
//! | 8 | 4 | payload length `n`, u32 LE |
//! | 12 | 4 | CRC-32C of the payload, u32 LE |
//! | 16 | n | payload: the `Manifest` as JSON (UTF-8) |
//! | 16 + n | to a multiple of 4096 | zeros |
//!
//! Replacement: write `MANIFEST.tmp` whole, fdatasync it, rename it over `MANIFEST`, fsync the
//! directory. A crash leaves either the old or the new manifest, never a mix: the rename is
//! atomic and only done once the new file is durable. A `MANIFEST.tmp` found at start is a
//! replacement that did not finish; it is ignored (and overwritten by the next one).
//!
//! No `MANIFEST` means a shard that never flushed: no segments, checkpoint 0.

use serde::{Deserialize, Serialize};

use crate::batch::Delete;
use crate::io::{align_up, IoError, Storage, StorageFile};

pub const MANIFEST_FILE: &str = "MANIFEST";
const TEMP_FILE: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"CSMANIF1";
const HEADER_BYTES: usize = 16;
/// A manifest past this is refused as damaged (it lists segments, not data).
const PAYLOAD_MAX: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Io(#[from] IoError),
    #[error("manifest {path}: {what}")]
    Damaged { path: String, what: String },
}

/// One live segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: u64,
    pub tenant: String,
    pub database: String,
    pub table: String,
    /// Earliest and latest time held (inclusive).
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub series: u64,
    /// The file's exact length.
    pub bytes: u64,
    /// The WAL checkpoint of the flush that wrote it: every record it holds came before.
    pub flushed_seq: u64,
    /// CRC-32C of the file's footer (which holds each column chunk's CRC-32C).
    pub footer_crc32c: u32,
}

impl SegmentMeta {
    /// The segment's file, relative to the shard's directory.
    pub fn path(&self) -> String {
        segment_path(self.id)
    }
}

/// The file of segment `id`, relative to the shard's directory.
pub fn segment_path(id: u64) -> String {
    format!("{SEGMENTS_DIR}/{id:020}.parquet")
}

pub const SEGMENTS_DIR: &str = "segments";

/// A delete that may remove points of live segments (those flushed before it). In the JSON,
/// the delete's own fields sit beside `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The delete's WAL sequence number.
    pub seq: u64,
    #[serde(flatten)]
    pub delete: Delete,
}

impl Tombstone {
    /// Whether it removes points of `segment`: the segment's table, and flushed before the
    /// delete was logged (a segment flushed after it already lacks what it deleted, and may
    /// hold points written after it).
    pub fn applies_to(&self, segment: &SegmentMeta) -> bool {
        let d = &self.delete;
        segment.flushed_seq <= self.seq
            && segment.tenant == d.tenant
            && segment.database == d.database
            && d.table.as_deref().is_none_or(|t| t == segment.table)
            && d.time.0 <= segment.max_time
            && d.time.1 > segment.min_time
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bumped by every replacement.
    pub version: u64,
    /// WAL records before this sequence number are in segments; replay starts here.
    pub wal_checkpoint: u64,
    pub next_segment: u64,
    pub segments: Vec<SegmentMeta>,
    pub tombstones: Vec<Tombstone>,
}

impl Manifest {
    /// The file's bytes (header, JSON, zero padding to the alignment).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(align_up((HEADER_BYTES + payload.len()) as u64) as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out.resize(align_up(out.len() as u64) as usize, 0);
        out
    }

    /// Parses a manifest file's bytes; `path` is for errors.
    pub fn decode(bytes: &[u8], path: &str) -> Result<Manifest, ManifestError> {
        let damaged = |what: String| ManifestError::Damaged {
            path: path.to_string(),
            what,
        };
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            return Err(damaged("no manifest header (magic CSMANIF1)".to_string()));
        }
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if len > PAYLOAD_MAX || HEADER_BYTES + len > bytes.len() {
            return Err(damaged(format!(
                "payload of {len} bytes at offset {HEADER_BYTES} in a file of {}",
                bytes.len()
            )));
        }
        let payload = &bytes[HEADER_BYTES..HEADER_BYTES + len];
        let found = crc32c::crc32c(payload);
        if found != crc {
            return Err(damaged(format!(
                "checksum mismatch over bytes {HEADER_BYTES}..{}: stored {crc:08x}, computed {found:08x}",
                HEADER_BYTES + len
            )));
        }
        serde_json::from_slice(payload).map_err(|e| damaged(format!("payload: {e}")))
    }

    /// Loads the manifest of the shard whose directory `storage` is rooted at; the empty
    /// manifest if there is none.
    pub async fn load<S: Storage>(storage: &S) -> Result<Manifest, ManifestError> {
        if !storage.list("").await?.iter().any(|n| n == MANIFEST_FILE) {
            return Ok(Manifest::default());
        }
        let file = storage.open(MANIFEST_FILE, false).await?;
        let len = file.len().await?;
        let path = storage.describe(MANIFEST_FILE).display().to_string();
        if len as usize > PAYLOAD_MAX + HEADER_BYTES + 4096 {
            return Err(ManifestError::Damaged {
                path,
                what: format!("{len} bytes is past any manifest's size"),
            });
        }
        let bytes = file.read_at(0, len as usize).await?;
        Manifest::decode(&bytes, &path)
    }

    /// Replaces the manifest durably with `self` (see the module docs).
    pub async fn store<S: Storage>(&self, storage: &S) -> Result<(), ManifestError> {
        let bytes = self.encode();
        if storage.list("").await?.iter().any(|n| n == TEMP_FILE) {
            storage.remove(TEMP_FILE).await?;
        }
        let file = storage.open(TEMP_FILE, true).await?;
        file.write_at(0, &bytes).await?;
        file.set_len(bytes.len() as u64).await?;
        file.sync().await?;
        storage.rename(TEMP_FILE, MANIFEST_FILE).await?;
        storage.sync_dir("").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{test_executor, SimStorage};

    fn sample() -> Manifest {
        Manifest {
            version: 3,
            wal_checkpoint: 42,
            next_segment: 2,
            segments: vec![SegmentMeta {
                id: 1,
                tenant: "cnosdb".into(),
                database: "public".into(),
                table: "cpu".into(),
                min_time: -5,
                max_time: 99,
                rows: 7,
                series: 2,
                bytes: 1234,
                flushed_seq: 42,
                footer_crc32c: 0xdead_beef,
            }],
            tombstones: vec![Tombstone {
                seq: 40,
                delete: Delete {
                    tenant: "cnosdb".into(),
                    database: "public".into(),
                    table: None,
                    tag_filters: vec![("host".into(), vec!["a".into()])],
                    time: (0, 10),
                },
            }],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_any_flipped_byte_is_caught() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(bytes.len() % 4096, 0);
        assert_eq!(Manifest::decode(&bytes, "m").expect("decodes"), m);
        let payload_end =
            16 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        for i in 0..payload_end {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(
                Manifest::decode(&bad, "m").is_err(),
                "flipped byte {i} went unnoticed"
            );
        }
    }

    /// A crash at any point of a replacement leaves the old manifest or the new one.
    #[test]
    fn a_crash_during_a_replacement_leaves_the_old_or_the_new_manifest() {
        test_executor().run(async {
            let old = sample();
            let mut new = sample();
            new.version = 4;
            new.wal_checkpoint = 50;
            let storage = SimStorage::new();
            old.store(&storage).await.expect("first store");
            storage.record_images(true);
            new.store(&storage).await.expect("second store");
            let images = storage.take_images();
            assert!(!images.is_empty());
            let mut saw_old = false;
            for image in images {
                let crashed = image.storage.crash();
                let got = Manifest::load(&crashed).await.expect("loads after a crash");
                assert!(got == old || got == new, "a crash left {got:?}");
                saw_old |= got == old;
            }
            assert!(saw_old, "some crash point comes before the rename");
            let after = storage.crash();
            assert_eq!(Manifest::load(&after).await.expect("loads"), new);
        });
    }
}
