//! Memtable (being written).
