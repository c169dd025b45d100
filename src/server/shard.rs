//! One shard's HTTP front: its SO_REUSEPORT acceptor, its connections, its graceful stop.
//!
//! Everything here runs on the shard's own pinned thread; `ShardCtx` is what every connection
//! task of the shard shares (through `Rc`, never across threads).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncWriteExt};
use glommio::net::{AcceptedTcpStream, TcpListener, TcpStream};
use glommio::sync::Gate;
use glommio::timer::Timer;
use tracing::{debug, warn};

use chronoshard_shard::engine::Engine;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::conn;
use crate::http::error::HttpError;
use crate::http::response::Response;
use crate::mesh::{Mesh, ShardMsg};
use crate::metrics::ShardMetrics;
use crate::server::inbox::CatalogOwner;
use crate::server::stop::StopEvent;

/// How often a shard looks at the process-wide stop flag set by the signal thread.
const STOP_POLL_MS: u64 = 20;

/// What every shard is handed at start; the same `Arc` for all of them.
pub struct Shared {
    pub config: Arc<Config>,
    /// Every shard's counters, for /metrics.
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    pub mesh: Mesh,
    /// Set by the main thread once every shard has replayed its WAL.
    pub ready: AtomicBool,
    /// Set by the signal thread on SIGINT/SIGTERM.
    pub stop_flag: AtomicBool,
    /// Catalog as loaded at start; later versions arrive as mesh messages.
    pub initial_catalog: Arc<Catalog>,
    /// The query runtime (tokio, unpinned threads) where DataFusion plans run above the scans.
    pub query_rt: tokio::runtime::Handle,
}

/// What the tasks of one shard share.
pub struct ShardCtx {
    pub id: usize,
    pub config: Arc<Config>,
    pub metrics: Arc<ShardMetrics>,
    pub shared: Arc<Shared>,
    /// Fired once when a graceful shutdown starts.
    pub stop: StopEvent,
    open_connections: Cell<usize>,
    /// This shard's snapshot of the catalog; replaced by newer versions, never mutated.
    catalog: RefCell<Arc<Catalog>>,
    /// The storage engine, once its WAL has been replayed.
    engine: RefCell<Option<Rc<Engine>>>,
    /// Shard 0 only: the owner of the catalog.
    pub catalog_owner: Option<CatalogOwner>,
    /// Every connection task of this shard; closing it waits for them (graceful drain).
    gate: Gate,
}

impl ShardCtx {
    pub fn new(id: usize, shared: Arc<Shared>) -> ShardCtx {
        let catalog = shared.initial_catalog.clone();
        ShardCtx {
            id,
            config: shared.config.clone(),
            metrics: shared.all_metrics[id].clone(),
            stop: StopEvent::default(),
            open_connections: Cell::new(0),
            catalog: RefCell::new(catalog.clone()),
            engine: RefCell::new(None),
            catalog_owner: (id == 0).then(|| CatalogOwner::new(catalog, &shared.config)),
            gate: Gate::new(),
            shared,
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Installs a catalog snapshot if it is newer than the one held.
    pub fn offer_catalog(&self, next: Arc<Catalog>) {
        let mut cur = self.catalog.borrow_mut();
        if next.version > cur.version {
            *cur = next;
        }
    }

    pub fn engine(&self) -> Option<Rc<Engine>> {
        self.engine.borrow().clone()
    }

    pub fn set_engine(&self, engine: Rc<Engine>) {
        *self.engine.borrow_mut() = Some(engine);
    }

    /// True once every shard has replayed its WAL.
    pub fn all_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    pub fn all_metrics(&self) -> &[Arc<ShardMetrics>] {
        &self.shared.all_metrics
    }
}

/// Binds the shard's listener. Separate from `serve` so start-up can report bind errors before
/// any shard serves.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

/// Accepts and serves connections until `stop_flag` is raised, then drains: the listener is
/// closed, idle connections end, in-flight requests get `shutdown_grace_ms` to finish.
pub async fn serve(ctx: Rc<ShardCtx>, listener: TcpListener) {
    glommio::spawn_local(watch_stop_flag(ctx.clone())).detach();
    loop {
        let accepted = future::or(async { Some(listener.shared_accept().await) }, async {
            ctx.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => place(&ctx, stream).await,
            Some(Err(e)) => {
                // EMFILE and friends: back off a little instead of spinning on the error.
                warn!(shard = ctx.id, error = %e, "accept failed");
                Timer::new(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    drain(&ctx).await;
}

/// Keeps an accepted connection here, or hands it to the shard with the fewest open
/// connections when that shard has fewer than this one. The kernel spreads connections over
/// the SO_REUSEPORT listeners by a hash of their addresses, so a handful of busy clients (a
/// bulk loader with 4 connections) can land on one core while the other idles; a write's
/// parsing runs where its connection lives.
async fn place(ctx: &Rc<ShardCtx>, stream: AcceptedTcpStream) {
    let open = |i: usize| {
        ctx.all_metrics()[i]
            .connections_open
            .load(Ordering::Relaxed)
    };
    let mine = open(ctx.id);
    let target = (0..ctx.shared.mesh.shards())
        .filter(|&i| i != ctx.id)
        .min_by_key(|&i| open(i))
        .filter(|&i| ctx.config.http.balance_connections && open(i) < mine);
    let Some(target) = target else {
        return admit(ctx, stream.bind_to_executor());
    };
    // Counted on the target now, so the next accept anywhere sees the move.
    ShardMetrics::add(&ctx.all_metrics()[target].connections_open, 1);
    if let Err(e) = ctx
        .shared
        .mesh
        .send(target, ShardMsg::Connection(stream))
        .await
    {
        ctx.all_metrics()[target]
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        warn!(shard = ctx.id, error = %e, "could not hand a connection over");
    }
}

/// Takes over a connection another shard accepted (its open count was already raised there).
pub fn adopt(ctx: &Rc<ShardCtx>, stream: AcceptedTcpStream) {
    ctx.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    admit(ctx, stream.bind_to_executor());
}

async fn watch_stop_flag(ctx: Rc<ShardCtx>) {
    while !ctx.shared.stop_flag.load(Ordering::Acquire) {
        Timer::new(Duration::from_millis(STOP_POLL_MS)).await;
    }
    ctx.stop.fire();
}

fn admit(ctx: &Rc<ShardCtx>, stream: TcpStream) {
    ShardMetrics::add(&ctx.metrics.connections_accepted, 1);
    let limit = ctx.config.http.connections_per_shard_max;
    if ctx.open_connections.get() >= limit {
        ShardMetrics::add(&ctx.metrics.connections_rejected, 1);
        glommio::spawn_local(refuse(stream, limit)).detach();
        return;
    }
    ctx.open_connections.set(ctx.open_connections.get() + 1);
    ShardMetrics::add(&ctx.metrics.connections_open, 1);
    let task_ctx = ctx.clone();
    let spawned = ctx.gate.spawn(async move {
        conn::serve(task_ctx.clone(), stream).await;
        task_ctx
            .open_connections
            .set(task_ctx.open_connections.get() - 1);
        task_ctx
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    });
    match spawned {
        Ok(task) => {
            task.detach();
        }
        Err(e) => warn!(shard = ctx.id, error = %e, "could not spawn connection task"),
    }
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let err = ApiError::from(HttpError::TooManyConnections { limit });
    let mut out = Vec::with_capacity(256);
    Response::from_error(&err).write_to(&mut out, true, true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

async fn drain(ctx: &ShardCtx) {
    let grace = Duration::from_millis(ctx.config.http.shutdown_grace_ms);
    let drained = future::or(
        async {
            let _ = ctx.gate.close().await;
            true
        },
        async {
            Timer::new(grace).await;
            false
        },
    )
    .await;
    if drained {
        debug!(shard = ctx.id, "all connections finished");
    } else {
        warn!(
            shard = ctx.id,
            open = ctx.open_connections.get(),
            grace_ms = grace.as_millis() as u64,
            "shutdown grace period over; closing the connections still open"
        );
    }
}
