//! Storage I/O trait (being written).
