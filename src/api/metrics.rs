//! `GET /metrics`: Prometheus text exposition of every shard's counters, summed at scrape.

use crate::http::response::Response;
use crate::metrics;
use crate::server::shard::ShardCtx;

pub fn handle(ctx: &ShardCtx) -> Response {
    let shards: Vec<&metrics::ShardMetrics> =
        ctx.all_metrics().iter().map(|m| m.as_ref()).collect();
    Response::new(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        metrics::render(&shards).into_bytes(),
    )
}
