//! Table (`text/table`) answers: arrow's pretty printer box, as CnosDB answers with
//! `pretty_format_batches`:
//!
//! ```text
//! +---------------------+------------+-------------+
//! | time                | station    | temperature |
//! +---------------------+------------+-------------+
//! | 2022-02-06T05:30:00 | XiaoMaiDao | 56.0        |
//! +---------------------+------------+-------------+
//! ```
//!
//! The box's column widths depend on every row, so a table answer is not streamed: batches are
//! kept until `finish`, which renders the whole box at once (a chunked table answer is one
//! chunk). What is kept is bounded by `bytes_max` (the arrow buffer bytes of the kept rows);
//! past it the answer fails with [`FormatError::TableTooLarge`] rather than holding an
//! unbounded result in memory. No rows give the header box alone; there is no trailing newline.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::pretty::pretty_format_batches_with_schema;

use super::FormatError;

/// Collects one answer's batches and renders them as one box.
pub(super) struct TableEncoder {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl TableEncoder {
    pub(super) fn new(schema: SchemaRef, bytes_max: usize) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            bytes: 0,
            bytes_max,
        }
    }

    pub(super) fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
    }

    /// Keeps `batch` for `finish`, failing once the kept bytes would pass `bytes_max`.
    pub(super) fn batch(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // A sliced batch shares its parent's buffers; count only the slice it shows.
        let bytes = batch
            .columns()
            .iter()
            .map(|column| {
                column
                    .to_data()
                    .get_slice_memory_size()
                    .unwrap_or_else(|_| column.get_array_memory_size())
            })
            .sum::<usize>();
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.bytes_max {
            return Err(FormatError::TableTooLarge {
                bytes_max: self.bytes_max,
            });
        }
        self.batches.push(batch.clone());
        Ok(())
    }

    /// Renders the box of every kept row and releases them.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let batches = std::mem::take(&mut self.batches);
        let table = pretty_format_batches_with_schema(self.schema.clone(), &batches)
            .map_err(FormatError::Table)?;
        out.extend_from_slice(table.to_string().as_bytes());
        Ok(())
    }
}
