//! `POST /api/v1/sql?db=&tenant=&chunked=`: one SQL statement in the body, the answer in the
//! format the `Accept` header asks for (CSV by default).
//!
//! Order (as CnosDB, with our contract's statuses): parameters (400), readiness (503),
//! credentials (401), `Accept` (400), database (422), then the statement: parse errors, more
//! than one statement and planning/execution errors are 422; an empty body is 200 with no body.
//! CnosDB's catalog statements and INSERT (`query::ddl`) are recognized first; everything else
//! is planned by DataFusion. Statements without a result set (DDL) answer 200 with no body.
//! `chunked=true` is accepted and validated; this first slice still answers with one
//! Content-Length body (streaming arrives with the scatter of plan fragments).

use std::rc::Rc;

use crate::auth;
use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::error::ApiError;
use crate::format::{self, Encoder};
use crate::http::error::HttpError;
use crate::http::query::Params;
use crate::http::request::RequestHead;
use crate::http::response::Response;
use crate::query::{self, ddl, QueryError};
use crate::server::shard::ShardCtx;

pub async fn handle(
    ctx: &Rc<ShardCtx>,
    head: &RequestHead,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let params = Params::parse(head.query.as_deref())?;
    let tenant = params.get_or("tenant", DEFAULT_TENANT)?.to_string();
    let database = params.get_or("db", DEFAULT_DATABASE)?.to_string();
    match params.get("chunked")? {
        None | Some("true") | Some("false") => {}
        Some(other) => {
            return Err(HttpError::InvalidParam {
                name: "chunked",
                reason: format!("{other:?} is not true or false"),
            }
            .into())
        }
    }
    if !ctx.all_ready() {
        return Err(HttpError::Starting.into());
    }
    let catalog = ctx.catalog();
    auth::authenticate(head.header("authorization"), &catalog)?;
    let format = format::negotiate(head.header_joined("accept").as_deref())?;
    catalog.database(&tenant, &database)?;
    let sql = String::from_utf8(body).map_err(|_| QueryError::NotUtf8)?;
    let output = match ddl::recognize(&sql)? {
        Some(statement) => ddl::execute(ctx, &tenant, &database, statement).await?,
        None => {
            let mesh = ctx.shared.mesh.clone();
            let timeout = std::time::Duration::from_millis(ctx.config.query_timeout_ms);
            let rt = &ctx.shared.query_rt;
            query::run(rt, mesh, catalog, tenant, database, sql, timeout).await?
        }
    };
    let Some(output) = output else {
        return Ok(Response::new(200, format.content_type(), Vec::new()));
    };
    let mut encoder = Encoder::new(format, output.schema.clone());
    let mut out = Vec::new();
    encoder.begin(&mut out);
    for batch in &output.batches {
        encoder.batch(batch, &mut out)?;
    }
    encoder.finish(&mut out)?;
    Ok(Response::new(200, format.content_type(), out))
}
