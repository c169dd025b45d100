//! ND-JSON (`application/nd-json`) answers: one JSON object per row, each line ended by `\n`,
//! objects exactly as in a JSON answer (see `json`). Nothing precedes or follows the rows, so an
//! answer without rows is an empty body, and every batch's lines can go out as one chunk.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::json::Objects;
use super::FormatError;

/// Writes one answer as newline-delimited JSON.
pub(super) struct LinesEncoder {
    objects: Objects,
}

impl LinesEncoder {
    pub(super) fn new(schema: SchemaRef) -> Self {
        Self {
            objects: Objects::new(schema),
        }
    }

    pub(super) fn batch(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.objects.batch(batch, out, b"", b"\n")
    }
}
