//! `POST /api/v1/sql?db=&tenant=&chunked=`: one SQL statement in the body, the answer in the
//! format the `Accept` header asks for (CSV by default).
//!
//! Order (as CnosDB, with our contract's statuses): parameters (400), readiness (503),
//! credentials (401), `Accept` (400), database (422), then the statement: parse errors, more
//! than one statement and planning/execution errors are 422; an empty body is 200 with no body.
//! CnosDB's catalog statements and INSERT (`query::ddl`) are recognized first; everything else
//! is planned by DataFusion. Statements without a result set (DDL) answer 200 with no body.
//!
//! `chunked=true` streams a DataFusion answer (`Transfer-Encoding: chunked`): the query task on
//! the query runtime encodes each record batch as it comes (CSV header, JSON's brackets and
//! commas kept as for one answer, so JSON stays one valid array), compresses it with the
//! negotiated coding's streaming encoder, and sends the bytes over a bounded channel the
//! connection writes from; memory stays a few batches whatever the result's size. The status is
//! decided once the first batch (or the end) is known: an error before that is the usual JSON
//! error answer; an error after it aborts the body (no terminating chunk, connection closed).
//! Catalog statements answer with one body either way (they are small).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::SendableRecordBatchStream;
use futures_lite::StreamExt;

use crate::auth;
use crate::catalog::{Catalog, DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::error::ApiError;
use crate::format::{self, Encoder, Format};
use crate::http::coding::{self, Coding, StreamEncoder};
use crate::http::error::HttpError;
use crate::http::query::Params;
use crate::http::request::RequestHead;
use crate::http::response::{BodyStream, Chunk, Response};
use crate::mesh::Mesh;
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
    let chunked = match params.get("chunked")? {
        Some("true") => true,
        None | Some("false") => false,
        Some(other) => {
            return Err(HttpError::InvalidParam {
                name: "chunked",
                reason: format!("{other:?} is not true or false"),
            }
            .into())
        }
    };
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
        None if chunked => {
            return streamed(ctx, head, catalog, tenant, database, sql, format).await;
        }
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

/// Chunks a streamed answer may have in flight between the query task and the connection.
const STREAM_CHUNKS_IN_FLIGHT: usize = 4;

/// Answers a DataFusion statement with a chunked body (see the module docs).
async fn streamed(
    ctx: &Rc<ShardCtx>,
    head: &RequestHead,
    catalog: Arc<Catalog>,
    tenant: String,
    database: String,
    sql: String,
    format: Format,
) -> Result<Response, ApiError> {
    let timeout = Duration::from_millis(ctx.config.query_timeout_ms);
    let deadline = Instant::now() + timeout;
    let coding = head
        .header_joined("accept-encoding")
        .and_then(|v| coding::negotiate(&v).ok())
        .unwrap_or(Coding::Identity);
    let compressor = StreamEncoder::new(coding).map_err(HttpError::from)?;
    let coding = compressor.coding();
    let (status_tx, status_rx) = async_channel::bounded(1);
    let (chunks_tx, chunks_rx) = async_channel::bounded(STREAM_CHUNKS_IN_FLIGHT);
    let producer = Producer {
        status: status_tx,
        chunks: chunks_tx,
        compressor,
    };
    let mesh = ctx.shared.mesh.clone();
    let task = ctx.shared.query_rt.spawn(async move {
        producer
            .run(mesh, catalog, tenant, database, sql, format)
            .await;
    });
    let guard = query::AbortOnDrop(task);
    let status = futures_lite::future::or(async { Some(status_rx.recv().await) }, async {
        glommio::timer::Timer::new(timeout).await;
        None
    })
    .await;
    match status {
        None => Err(QueryError::Timeout {
            ms: timeout.as_millis() as u64,
        }
        .into()),
        Some(Err(_)) => Err(QueryError::RuntimeGone.into()),
        Some(Ok(Err(e))) => Err(e),
        Some(Ok(Ok(()))) => {
            let mut r = Response::new(200, format.content_type(), Vec::new());
            if coding != Coding::Identity {
                r.headers
                    .push(("Content-Encoding", coding.name().to_string()));
                r.headers.push(("Vary", "Accept-Encoding".to_string()));
            }
            r.stream = Some(BodyStream {
                chunks: chunks_rx,
                deadline,
                guard: Some(Box::new(guard)),
            });
            Ok(r)
        }
    }
}

/// The query-runtime side of a streamed answer.
struct Producer {
    /// Ok once the answer is known to start (its status is 200), or the error before that.
    status: async_channel::Sender<Result<(), ApiError>>,
    chunks: async_channel::Sender<Chunk>,
    compressor: StreamEncoder,
}

impl Producer {
    async fn run(
        mut self,
        mesh: Mesh,
        catalog: Arc<Catalog>,
        tenant: String,
        database: String,
        sql: String,
        format: Format,
    ) {
        let started = query::start(mesh, &catalog, &tenant, &database, &sql).await;
        let (schema, mut batches) = match started {
            Ok(Some(s)) => s,
            Ok(None) => {
                if self.status.send(Ok(())).await.is_ok() {
                    let _ = self.chunks.send(Chunk::End).await;
                }
                return;
            }
            Err(e) => return self.refuse(e.into()).await,
        };
        let mut encoder = match Encoder::try_new(format, schema) {
            Ok(e) => e,
            Err(e) => return self.refuse(e.into()).await,
        };
        // The first batch decides the status: an error up to here is an ordinary answer.
        let mut out = Vec::new();
        encoder.begin(&mut out);
        let first = match batches.next().await.transpose() {
            Ok(first) => first,
            Err(e) => return self.refuse(query::datafusion_error(e).into()).await,
        };
        if let Some(batch) = &first {
            if let Err(e) = encoder.batch(batch, &mut out) {
                return self.refuse(e.into()).await;
            }
        }
        if self.status.send(Ok(())).await.is_err() || !self.send(out).await {
            return;
        }
        if let Err(reason) = self.stream_rest(encoder, batches).await {
            let _ = self.chunks.send(Chunk::Abort(reason)).await;
        }
    }

    /// After the first chunk: every further batch, the encoder's and the coding's tails, the
    /// end marker. Err(reason) aborts the body; Ok also when the connection went away.
    async fn stream_rest(
        &mut self,
        mut encoder: Encoder,
        mut batches: SendableRecordBatchStream,
    ) -> Result<(), String> {
        while let Some(item) = batches.next().await {
            let mut out = Vec::new();
            let batch = item.map_err(|e| e.to_string())?;
            encoder.batch(&batch, &mut out).map_err(|e| e.to_string())?;
            if !self.send(out).await {
                return Ok(()); // the connection is gone
            }
        }
        let mut out = Vec::new();
        encoder.finish(&mut out).map_err(|e| e.to_string())?;
        if !self.send(out).await {
            return Ok(());
        }
        let compressor = std::mem::replace(&mut self.compressor, StreamEncoder::Identity);
        let tail = compressor.finish().map_err(|e| e.to_string())?;
        if !tail.is_empty() && self.chunks.send(Chunk::Data(tail)).await.is_err() {
            return Ok(());
        }
        let _ = self.chunks.send(Chunk::End).await;
        Ok(())
    }

    async fn refuse(self, e: ApiError) {
        let _ = self.status.send(Err(e)).await;
    }

    /// Compresses and sends body bytes; false when the body cannot go on.
    async fn send(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() {
            return true;
        }
        let chunk = match self.compressor.push(data) {
            Ok(bytes) if bytes.is_empty() => return true,
            Ok(bytes) => Chunk::Data(bytes),
            Err(e) => Chunk::Abort(format!("compressing the answer: {e}")),
        };
        let go_on = matches!(chunk, Chunk::Data(_));
        self.chunks.send(chunk).await.is_ok() && go_on
    }
}
