//! Every route the server answers, in one place: the whole public HTTP surface.
//!
//! A path that is not here is 404; a path that is here with a method it does not take is 405 with
//! an `Allow` header.

use crate::config::HttpConfig;
use crate::http::error::HttpError;
use crate::http::request::Method;

pub const PING: &str = "/api/v1/ping";
pub const WRITE: &str = "/api/v1/write";
pub const SQL: &str = "/api/v1/sql";
pub const METRICS: &str = "/metrics";

/// A resolved route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Ping,
    Write,
    Sql,
    Metrics,
}

/// Every route, in the order /metrics reports them.
pub const ALL: [Route; 4] = [Route::Ping, Route::Write, Route::Sql, Route::Metrics];

impl Route {
    /// Finds the route of a request, or the 404/405 to answer.
    pub fn resolve(method: &Method, path: &str) -> Result<Route, HttpError> {
        let (route, allowed): (Route, &[Method]) = match path {
            PING => (Route::Ping, &[Method::Get, Method::Head]),
            WRITE => (Route::Write, &[Method::Post]),
            SQL => (Route::Sql, &[Method::Post]),
            METRICS => (Route::Metrics, &[Method::Get, Method::Head]),
            _ => {
                return Err(HttpError::NotFound {
                    path: path.to_string(),
                })
            }
        };
        if allowed.contains(method) {
            Ok(route)
        } else {
            Err(HttpError::MethodNotAllowed {
                method: method_name(method).to_string(),
                path: path.to_string(),
                allow: route.allow(),
            })
        }
    }

    /// The `Allow` header for this route.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Ping | Route::Metrics => "GET, HEAD",
            Route::Write | Route::Sql => "POST",
        }
    }

    /// Largest body this route reads, on the wire and after decoding.
    pub fn body_bytes_max(self, http: &HttpConfig) -> usize {
        match self {
            Route::Write => http.write_body_bytes_max,
            Route::Sql => http.sql_body_bytes_max,
            // Routes that take no body still read one, bounded small, to keep the connection.
            Route::Ping | Route::Metrics => 64 * 1024,
        }
    }

    /// Short name used as the `route` label in /metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Ping => "ping",
            Route::Write => "write",
            Route::Sql => "sql",
            Route::Metrics => "metrics",
        }
    }

    /// Position in `ALL`, for per-route counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Options => "OPTIONS",
        Method::Other(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn wrong_method_names_the_allowed_ones() {
        let err = Route::resolve(&Method::Post, PING).unwrap_err();
        assert!(matches!(
            err,
            HttpError::MethodNotAllowed {
                allow: "GET, HEAD",
                ..
            }
        ));
        assert!(matches!(
            Route::resolve(&Method::Get, "/nope"),
            Err(HttpError::NotFound { .. })
        ));
        assert_eq!(Route::resolve(&Method::Head, PING).ok(), Some(Route::Ping));
    }
}
