//! The one place where errors become HTTP answers.
//!
//! Each layer has its own error enum; `ApiError` wraps them at the HTTP boundary and `status` and
//! `code` translate every variant exactly once. Codes keep CnosDB's six-digit scheme (two digits
//! of module, four of variant: `00` internal, `04` HTTP), reusing CnosDB's numbers where it has
//! one for the same failure; `docs/api.md` lists them all.

use crate::http::coding::CodingError;
use crate::http::error::HttpError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CodingError> for ApiError {
    fn from(e: CodingError) -> Self {
        ApiError::Http(HttpError::Coding(e))
    }
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Http(e) => match e {
                HttpError::Malformed(_)
                | HttpError::InvalidHeader { .. }
                | HttpError::InvalidQuery(_) => 400,
                HttpError::Coding(c) => match c {
                    CodingError::TooLarge { .. } => 413,
                    CodingError::Unsupported(_)
                    | CodingError::Decode { .. }
                    | CodingError::NotAcceptable(_) => 400,
                    CodingError::Encode { .. } => 500,
                },
                HttpError::HeaderTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
                HttpError::BodyTooLarge { .. } => 413,
                HttpError::NotFound { .. } => 404,
                HttpError::MethodNotAllowed { .. } => 405,
                HttpError::ShuttingDown | HttpError::TooManyConnections { .. } => 503,
                HttpError::NotImplemented { .. } => 500,
            },
            ApiError::Internal(_) => 500,
        }
    }

    /// The six-digit error code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Http(e) => match e {
                HttpError::Malformed(_) => "040001",
                HttpError::InvalidQuery(_) => "040002",
                HttpError::InvalidHeader { .. } => "040005",
                HttpError::Coding(c) => match c {
                    CodingError::TooLarge { .. } => "040020",
                    CodingError::Decode { .. } => "040013",
                    CodingError::Unsupported(_) | CodingError::NotAcceptable(_) => "040005",
                    CodingError::Encode { .. } => "040025",
                },
                HttpError::NotFound { .. } => "040018",
                HttpError::MethodNotAllowed { .. } => "040019",
                HttpError::BodyTooLarge { .. } => "040020",
                HttpError::HeaderTooLarge { .. } | HttpError::TooManyHeaders { .. } => "040021",
                HttpError::ShuttingDown => "040022",
                HttpError::TooManyConnections { .. } => "040023",
                HttpError::NotImplemented { .. } => "040024",
            },
            ApiError::Internal(_) => "000000",
        }
    }

    /// The `Allow` header value for a 405.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            ApiError::Http(HttpError::MethodNotAllowed { allow, .. }) => Some(allow),
            _ => None,
        }
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
}
