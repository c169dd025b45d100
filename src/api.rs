//! Request handlers, one file per request kind, reached through `dispatch`.

mod metrics;
mod ping;
mod sql;
mod write;

use std::rc::Rc;

use crate::error::ApiError;
use crate::http::request::RequestHead;
use crate::http::response::Response;
use crate::http::route::Route;
use crate::server::shard::ShardCtx;

/// Runs the handler of `route` on a fully read and decoded body.
pub async fn dispatch(
    ctx: &Rc<ShardCtx>,
    route: Route,
    head: &RequestHead,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    match route {
        Route::Ping => Ok(ping::handle()),
        Route::Metrics => Ok(metrics::handle(ctx)),
        Route::Write => write::handle(ctx, head, body).await,
        Route::Sql => sql::handle(ctx, head, body).await,
    }
}
