//! The one place where errors become HTTP answers.
//!
//! Each layer has its own error enum; `ApiError` wraps them at the HTTP boundary and `class`
//! translates every variant exactly once into a status and a six-digit error code. Codes keep
//! CnosDB's scheme (two digits of module, four of variant: `00` internal, `02` storage, `03`
//! meta, `04` HTTP, `05` coordinator; `01` query, its `0100xx` semantic errors as CnosDB numbers
//! them), reusing CnosDB's numbers where it has one for the same
//! failure; `docs/api.md` lists them all.

use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::format::FormatError;
use crate::http::coding::CodingError;
use crate::http::error::HttpError;
use crate::ingest::{EngineFailure, IngestError};
use crate::lp::LpErrors;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    LineProtocol(#[from] LpErrors),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CodingError> for ApiError {
    fn from(e: CodingError) -> Self {
        ApiError::Http(HttpError::Coding(e))
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        ApiError::Ingest(IngestError::Catalog(e))
    }
}

impl From<EngineFailure> for ApiError {
    fn from(e: EngineFailure) -> Self {
        ApiError::Ingest(IngestError::Engine(e))
    }
}

/// Seconds a client is told to wait after a 429 or a 503.
const RETRY_AFTER_S: &str = "1";

impl ApiError {
    /// The HTTP status and error code of this error: the whole mapping, in one match.
    pub fn class(&self) -> (u16, &'static str) {
        match self {
            ApiError::Http(e) => http_class(e),
            ApiError::Auth(_) => (401, "010016"),
            ApiError::LineProtocol(e) if e.is_invalid_utf8() => (422, "040015"),
            ApiError::LineProtocol(_) => (422, "040004"),
            ApiError::Ingest(IngestError::Catalog(e)) => catalog_class(e),
            ApiError::Ingest(IngestError::TimestampOverflow { .. }) => (422, "050001"),
            ApiError::Ingest(IngestError::Engine(e)) => match e {
                EngineFailure::Busy { .. } | EngineFailure::WalBusy { .. } => (429, "020030"),
                EngineFailure::Unavailable { .. } => (503, "040022"),
                EngineFailure::Storage { .. } => (500, "020001"),
            },
            ApiError::Query(e) => match e {
                QueryError::Parse(_) => (422, "010009"),
                QueryError::MultiStatement { .. } => (422, "010013"),
                QueryError::DataFusion(_) => (422, "010001"),
                QueryError::NotUtf8 => (422, "040015"),
                QueryError::RuntimeGone => (503, "040022"),
                QueryError::Storage(_) => (500, "020001"),
                QueryError::Timeout { .. } => (500, "000002"),
                QueryError::NotImplemented(_) => (422, "010005"),
                QueryError::Semantic(_) => (422, "010003"),
                QueryError::SameColumnName(_) => (422, "010027"),
                QueryError::AtLeastOneField => (422, "010032"),
                QueryError::DataType { .. } => (422, "010041"),
                QueryError::TagCodec => (422, "010034"),
                QueryError::MissingColumn { .. } => (422, "010044"),
                QueryError::MismatchColumns => (422, "010045"),
                QueryError::ShowSeriesField(_) => (422, "010046"),
                QueryError::Cast(_) => (422, "010002"),
                QueryError::Internal(_) => (500, "000000"),
            },
            ApiError::Format(FormatError::NotAcceptable(_)) => (400, "040005"),
            // Misuse of the encoder by our own code, not a property of the answer.
            ApiError::Format(FormatError::AfterFinish | FormatError::ColumnCount { .. }) => {
                (500, "000000")
            }
            ApiError::Format(_) => (422, "040007"),
            ApiError::Internal(_) => (500, "000000"),
        }
    }

    pub fn status(&self) -> u16 {
        self.class().0
    }

    pub fn code(&self) -> &'static str {
        self.class().1
    }

    /// Headers the status calls for: `Allow` on 405, `WWW-Authenticate` on 401, `Retry-After`
    /// on 429 and 503.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let ApiError::Http(HttpError::MethodNotAllowed { allow, .. }) = self {
            h.push(("Allow", allow.to_string()));
        }
        match self.status() {
            401 => h.push((
                "WWW-Authenticate",
                "Basic realm=\"chronoshard\"".to_string(),
            )),
            429 | 503 => h.push(("Retry-After", RETRY_AFTER_S.to_string())),
            _ => {}
        }
        h
    }

    /// The JSON body every error answer carries.
    pub fn body(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64);
        out.push_str("{\"error_code\":\"");
        out.push_str(self.code());
        out.push_str("\",\"error_message\":");
        crate::http::response::push_json_string(&mut out, &self.to_string());
        out.push('}');
        out.into_bytes()
    }
}

fn http_class(e: &HttpError) -> (u16, &'static str) {
    match e {
        HttpError::Malformed(_) => (400, "040001"),
        HttpError::InvalidQuery(_) => (400, "040002"),
        HttpError::InvalidParam { .. } => (400, "040003"),
        HttpError::InvalidHeader { .. } => (400, "040005"),
        HttpError::Coding(c) => match c {
            CodingError::TooLarge { .. } => (413, "040020"),
            CodingError::Decode { .. } => (400, "040013"),
            CodingError::Unsupported(_) | CodingError::NotAcceptable(_) => (400, "040005"),
            CodingError::Encode { .. } => (500, "040025"),
        },
        HttpError::NotFound { .. } => (404, "040018"),
        HttpError::MethodNotAllowed { .. } => (405, "040019"),
        HttpError::BodyTooLarge { .. } => (413, "040020"),
        HttpError::HeaderTooLarge { .. } | HttpError::TooManyHeaders { .. } => (431, "040021"),
        HttpError::ShuttingDown | HttpError::Starting => (503, "040022"),
        HttpError::TooManyConnections { .. } => (503, "040023"),
    }
}

fn catalog_class(e: &CatalogError) -> (u16, &'static str) {
    match e {
        CatalogError::TenantNotFound(_) => (422, "030010"),
        CatalogError::DatabaseNotFound(_) => (422, "030017"),
        CatalogError::TypeConflict { .. } | CatalogError::ReservedName(_) => (422, "020004"),
        CatalogError::DatabaseExists(_) => (422, "030018"),
        CatalogError::TableNotFound(_) => (422, "030019"),
        CatalogError::TableExists(_) => (422, "030020"),
        CatalogError::ColumnExists { .. } => (422, "010028"),
        CatalogError::ColumnNotFound { .. } => (422, "010029"),
        CatalogError::DropTag(_) => (422, "010030"),
        CatalogError::DropTime => (422, "010031"),
        CatalogError::AtLeastOneField => (422, "010032"),
        CatalogError::TagCodec => (422, "010034"),
        CatalogError::DroppedColumn { .. } => (422, "010047"),
        CatalogError::TimeColumnAlter => (422, "010035"),
        CatalogError::CodecMismatch { .. } => (422, "010042"),
        CatalogError::Persist { .. } | CatalogError::ShardCountChanged { .. } => (500, "030001"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_json_with_escaped_message() {
        let e = ApiError::from(HttpError::Malformed("bad \"quote\"\n".into()));
        let body = String::from_utf8(e.body()).expect("utf8");
        assert_eq!(
            body,
            r#"{"error_code":"040001","error_message":"malformed request: bad \"quote\"\n"}"#
        );
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn decompression_overflow_is_413() {
        let e = ApiError::from(CodingError::TooLarge {
            coding: "gzip",
            limit_bytes: 10,
        });
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn status_headers() {
        let e = ApiError::from(AuthError::Missing);
        assert_eq!(e.status(), 401);
        assert!(e.headers().iter().any(|(n, _)| *n == "WWW-Authenticate"));
        let e = ApiError::from(EngineFailure::Busy {
            shard: 0,
            bytes: 1,
            bytes_max: 1,
        });
        assert_eq!(e.status(), 429);
        assert!(e.headers().iter().any(|(n, _)| *n == "Retry-After"));
    }
}
