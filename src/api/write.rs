//! `POST /api/v1/write?db=&tenant=&precision=`: line protocol in, 200 with an empty body once
//! every owner shard has made its rows durable (per the WAL mode).
//!
//! Order (as CnosDB, with our contract's statuses): parameters (400), readiness (503),
//! credentials (401), tenant and database (422), syntax of the whole body (422, nothing written),
//! schema (422), then the rows go to their owner shards.

use std::cell::RefCell;
use std::rc::Rc;

use crate::auth;
use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::error::ApiError;
use crate::http::error::HttpError;
use crate::http::query::Params;
use crate::http::request::RequestHead;
use crate::http::response::Response;
use crate::ingest::{self, WritePrecision};
use crate::lp::{self, ParsedBatch};
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
    let mut parsed = take_parsed();
    let result = match lp::parse(&body, &mut parsed) {
        Ok(()) if parsed.is_empty() => Ok(0),
        Ok(()) => ingest::write_parsed(ctx, &parsed, tenant, database, precision).await,
        Err(e) => Err(e.into()),
    };
    give_back(parsed);
    result.map(|_| Response::empty_ok())
}

/// Parsed-line batches kept between requests of this shard's thread: a 5000-line body fills
/// vectors of about 100k spans, which would otherwise be grown (and copied) anew per request.
const POOL_BATCHES_MAX: usize = 8;
/// A batch grown past this (by one huge body) is dropped rather than kept.
const POOL_BATCH_BYTES_MAX: usize = 32 << 20;

thread_local! {
    static PARSED_POOL: RefCell<Vec<ParsedBatch<'static>>> = const { RefCell::new(Vec::new()) };
}

fn take_parsed() -> ParsedBatch<'static> {
    PARSED_POOL
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_default()
}

fn give_back(parsed: ParsedBatch<'_>) {
    let parsed = parsed.recycle();
    if parsed.capacity_bytes() > POOL_BATCH_BYTES_MAX {
        return;
    }
    PARSED_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_BATCHES_MAX {
            pool.push(parsed);
        }
    });
}
