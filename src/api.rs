//! Request handlers, one file per request kind, reached through `dispatch`.

mod metrics;
mod ping;

use crate::error::ApiError;
use crate::http::error::HttpError;
use crate::http::request::RequestHead;
use crate::http::response::Response;
use crate::http::route::Route;
use crate::server::shard::ShardCtx;

/// Runs the handler of `route` on a fully read and decoded body.
pub async fn dispatch(
    ctx: &ShardCtx,
    route: Route,
    _head: &RequestHead,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    match route {
        Route::Ping => Ok(ping::handle()),
        Route::Metrics => Ok(metrics::handle(ctx)),
        // The write and query paths are being built (issues "Ingest" and "SQL over HTTP"). Until
        // then the routes exist, so limits, codings and 405s behave, and say so honestly.
        Route::Write | Route::Sql => Err(HttpError::NotImplemented {
            route: route.label(),
            body_bytes: body.len(),
        }
        .into()),
    }
}
