//! Errors of the HTTP layer: what can be wrong with a request before any handler sees it.
//!
//! These say what happened; which status and error code a client gets for each is decided in one
//! place, `crate::error`.

use crate::http::coding::CodingError;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("request head is larger than {limit_bytes} bytes")]
    HeaderTooLarge { limit_bytes: usize },
    #[error("request has more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("request body is larger than {limit_bytes} bytes")]
    BodyTooLarge { limit_bytes: usize },
    #[error("{0}")]
    Coding(#[from] CodingError),
    #[error("no route for {path}")]
    NotFound { path: String },
    #[error("method {method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("invalid parameter {name:?}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("server is starting (replaying its write-ahead log); retry shortly")]
    Starting,
    #[error("too many connections on this shard (limit {limit})")]
    TooManyConnections { limit: usize },
}
