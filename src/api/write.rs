//! `POST /api/v1/write?db=&tenant=&precision=`: line protocol in, 200 with an empty body once
//! every owner shard has made its rows durable (per the WAL mode).
//!
//! Order (as CnosDB, with our contract's statuses): parameters (400), readiness (503),
//! credentials (401), tenant and database (422), syntax of the whole body (422, nothing written),
//! schema (422), then the rows go to their owner shards.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth;
use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::error::ApiError;
use crate::http::error::HttpError;
use crate::http::query::Params;
use crate::http::request::RequestHead;
use crate::http::response::Response;
use crate::ingest::{self, EngineFailure, RouteCtx, WritePrecision};
use crate::lp::{self, ParsedBatch};
use crate::mesh::ShardMsg;
use crate::server::inbox;
use crate::server::shard::ShardCtx;

pub async fn handle(
    ctx: &Rc<ShardCtx>,
    head: &RequestHead,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let params = Params::parse(head.query.as_deref())?;
    let tenant = params.get_or("tenant", DEFAULT_TENANT)?;
    let database = params.get_or("db", DEFAULT_DATABASE)?;
    let precision_text = params.get_or("precision", "ns")?;
    let precision = WritePrecision::parse(precision_text).ok_or(HttpError::InvalidParam {
        name: "precision",
        reason: format!("{precision_text:?} is not one of ns, us, ms, s"),
    })?;
    if !ctx.all_ready() {
        return Err(HttpError::Starting.into());
    }
    let catalog = ctx.catalog();
    auth::authenticate(head.header("authorization"), &catalog)?;
    catalog.database(tenant, database)?;
    let mut parsed = ParsedBatch::default();
    lp::parse(&body, &mut parsed)?;
    if parsed.is_empty() {
        return Ok(Response::empty_ok());
    }
    let want = ingest::wanted_columns(&parsed, tenant, database)?;
    let catalog = inbox::ensure_catalog(ctx, want).await?;
    let routed = ingest::route_rows(
        &parsed,
        &RouteCtx {
            tenant,
            database,
            precision,
            catalog: &catalog,
            shards: ctx.shared.mesh.shards(),
            now_ns: now_ns(),
        },
    )?;
    drop(parsed);
    send_to_owners(ctx, routed.per_shard).await?;
    Ok(Response::empty_ok())
}

/// Sends every non-empty batch to its owner, handles the local one in place, and waits for all.
/// The first failure is reported; the other owners' parts are still awaited so no reply is lost.
async fn send_to_owners(
    ctx: &Rc<ShardCtx>,
    per_shard: Vec<chronoshard_shard::batch::WriteBatch>,
) -> Result<(), ApiError> {
    let mut waiting = Vec::new();
    let mut local = None;
    for (shard, batch) in per_shard.into_iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        if shard == ctx.id {
            local = Some(batch);
            continue;
        }
        let (tx, rx) = async_channel::bounded(1);
        let msg = ShardMsg::Write { batch, reply: tx };
        ctx.shared
            .mesh
            .send(shard, msg)
            .await
            .map_err(|_| EngineFailure::Unavailable { shard })?;
        waiting.push((shard, rx));
    }
    let mut first_err: Option<EngineFailure> = None;
    if let Some(batch) = local {
        if let Err(e) = inbox::write_local(ctx, &batch).await {
            first_err.get_or_insert(e);
        }
    }
    for (shard, rx) in waiting {
        let outcome = rx
            .recv()
            .await
            .unwrap_or(Err(EngineFailure::Unavailable { shard }));
        if let Err(e) = outcome {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
