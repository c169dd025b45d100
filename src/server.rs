//! Start-up and shutdown: one pinned glommio executor per shard, signals, the data directory.
//!
//! Start-up order: lock the data directory, fit io_uring's registered memory under
//! RLIMIT_MEMLOCK, fix the listen address (port 0 is resolved once, so every shard binds the same
//! port), start the shards and wait until each has bound its SO_REUSEPORT listener, then log the
//! one start-up line. Any failure on the way is one line on stderr and a non-zero exit.

pub mod flush;
pub mod inbox;
pub mod shard;
pub mod stop;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{info, warn};

use chronoshard_shard::engine::{Engine, EngineOptions, WalMode as EngineWalMode};

use crate::catalog::{Catalog, CatalogError};
use crate::cli::ConfigSource;
use crate::config::{Config, WalMode};
use crate::mesh::Mesh;
use shard::{ShardCtx, Shared};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another chronoshard process (lock {lock})")]
    DataDirLocked { path: PathBuf, lock: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("io_uring needs {needed_bytes} bytes of locked memory for {shards} shards but RLIMIT_MEMLOCK allows {limit_bytes} and could not be raised; lower io_memory_bytes_per_shard or --shards, or raise `ulimit -l`")]
    Memlock {
        needed_bytes: u64,
        limit_bytes: u64,
        shards: usize,
    },
    #[error("starting shard {shard}: {message}")]
    Shard { shard: usize, message: String },
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("auth = true needs password checking, which this build does not have yet (tenants-and-users issue); start without --auth")]
    AuthNotYet,
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub fn run(config: Config, source: &ConfigSource) -> Result<(), ServerError> {
    if config.auth {
        return Err(ServerError::AuthNotYet);
    }
    let _lock = lock_data_dir(&config.data_dir)?;
    let cpus = allowed_cpus();
    let shards = config.shard_count(cpus.len());
    ensure_memlock(shards, config.io_memory_bytes_per_shard)?;
    let addr = resolve_addr(config.http_addr)?;
    let catalog = Catalog::load_or_bootstrap(&config.data_dir.join("meta"), shards)?;
    let (mesh, inboxes) = Mesh::new(shards);
    let query_rt = query_runtime()?;
    let shared = Arc::new(Shared {
        config: Arc::new(config),
        all_metrics: Arc::new((0..shards).map(|_| Arc::default()).collect()),
        mesh,
        ready: AtomicBool::new(false),
        stop_flag: AtomicBool::new(false),
        initial_catalog: Arc::new(catalog),
        query_rt: query_rt.handle().clone(),
    });
    // Installed before the shards start, so a signal during start-up is a graceful stop too.
    let signals = install_signals(shared.clone())?;
    let (events_tx, events) = mpsc::channel::<StartEvent>();
    let mut handles = Vec::with_capacity(shards);
    for (id, inbox) in inboxes.into_iter().enumerate() {
        let cpu = cpus[id % cpus.len()];
        let (shared_for, events_for) = (shared.clone(), events_tx.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(shared.config.io_memory_bytes_per_shard)
            .preempt_timer(Duration::from_millis(2))
            .spawn(move || shard_main(id, addr, shared_for, inbox, events_for))
            .map_err(|e| ServerError::Shard {
                shard: id,
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(events_tx);
    let started = start_up(&shared, &events, addr, source);
    if let Err(e) = started {
        shared.stop_flag.store(true, Ordering::Release);
        join_all(handles);
        return Err(e);
    }
    join_all(handles);
    signals.close();
    info!("chronoshard stopped");
    Ok(())
}

/// The tokio runtime DataFusion's exchanges need. Its threads are created here on the main
/// thread, so they are not pinned to a shard's core.
fn query_runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query")
        .build()
        .map_err(|e| ServerError::Shard {
            shard: 0,
            message: format!("starting the query runtime: {e}"),
        })
}

/// Progress reports from the shards during start-up.
enum StartEvent {
    Bound,
    Replayed { records: u64, rows: u64 },
    Failed(ServerError),
}

/// Waits for every shard to bind (then logs the start-up line) and to replay its WAL (then
/// opens writes and queries to clients).
fn start_up(
    shared: &Shared,
    events: &mpsc::Receiver<StartEvent>,
    addr: SocketAddr,
    source: &ConfigSource,
) -> Result<(), ServerError> {
    let shards = shared.all_metrics.len();
    let started = Instant::now();
    let (mut bound, mut replayed, mut records, mut rows) = (0, 0, 0, 0);
    while replayed < shards {
        match events.recv_timeout(Duration::from_secs(600)) {
            Ok(StartEvent::Bound) => {
                bound += 1;
                if bound == shards {
                    log_start_line(&shared.config, addr, shards, source);
                }
            }
            Ok(StartEvent::Replayed {
                records: r,
                rows: n,
            }) => {
                (replayed, records, rows) = (replayed + 1, records + r, rows + n);
            }
            Ok(StartEvent::Failed(e)) => return Err(e),
            Err(_) => {
                return Err(ServerError::Shard {
                    shard: bound.min(replayed),
                    message: "did not start within 600 s".into(),
                })
            }
        }
    }
    shared.ready.store(true, Ordering::Release);
    info!(
        "ready: replayed {records} WAL records ({rows} rows) in {} ms",
        started.elapsed().as_millis()
    );
    Ok(())
}

fn log_start_line(config: &Config, addr: SocketAddr, shards: usize, source: &ConfigSource) {
    info!(
        "chronoshard {} listening on {addr}, shards {shards}, data dir {}, WAL {}, auth {}, config {}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display(),
        config.wal_mode,
        if config.auth { "on" } else { "off" },
        describe_source(source),
    );
}

async fn shard_main(
    id: usize,
    addr: SocketAddr,
    shared: Arc<Shared>,
    inbox: async_channel::Receiver<crate::mesh::ShardMsg>,
    events: mpsc::Sender<StartEvent>,
) {
    let listener = match shard::bind(addr) {
        Ok(l) => l,
        Err(source) => {
            let _ = events.send(StartEvent::Failed(ServerError::Bind { addr, source }));
            return;
        }
    };
    let _ = events.send(StartEvent::Bound);
    let ctx = Rc::new(ShardCtx::new(id, shared));
    crate::query::shard_local::install(&ctx);
    let serving = glommio::spawn_local(shard::serve(ctx.clone(), listener));
    match Engine::open(engine_options(&ctx)).await {
        Ok((engine, replay)) => {
            ctx.metrics.record_engine(&engine.stats());
            ctx.set_engine(Rc::new(engine));
            let _ = events.send(StartEvent::Replayed {
                records: replay.records,
                rows: replay.rows,
            });
        }
        Err(e) => {
            let _ = events.send(StartEvent::Failed(ServerError::Shard {
                shard: id,
                message: format!("opening storage: {e}"),
            }));
            return;
        }
    }
    glommio::spawn_local(inbox::run(ctx.clone(), inbox)).detach();
    flush::start(ctx.clone());
    serving.await;
    if let Some(engine) = ctx.engine() {
        if let Err(e) = engine.close().await {
            warn!(shard = id, error = %e, "syncing the WAL at shutdown failed");
        }
    }
}

fn engine_options(ctx: &ShardCtx) -> EngineOptions {
    let c = &ctx.config;
    EngineOptions {
        dir: c.data_dir.join(format!("shard-{}", ctx.id)),
        wal_mode: match c.wal_mode {
            WalMode::Sync => EngineWalMode::Sync,
            WalMode::Interval => EngineWalMode::Interval {
                interval_ms: c.wal_interval_ms,
            },
            WalMode::Off => EngineWalMode::Off,
        },
        wal_segment_bytes: c.wal_segment_bytes,
        memtable_bytes_max: c.memtable_bytes_per_shard_max,
        full_wait: Duration::from_millis(c.memtable_full_wait_ms),
        flush_bytes: c.memtable_flush_bytes_per_shard,
        flush_age: Duration::from_millis(c.memtable_flush_age_ms),
        segment_cache_bytes: c.segment_cache_bytes_per_shard,
        compact_segments: c.compact_segments,
        compact_rows_max: c.compact_rows_max,
    }
}

fn join_all(handles: Vec<glommio::ExecutorJoinHandle<()>>) {
    for h in handles {
        if let Err(e) = h.join() {
            warn!(error = %e, "shard thread ended abnormally");
        }
    }
}

/// The signal thread: the first SIGINT/SIGTERM starts a graceful stop, a second one exits at once.
fn install_signals(shared: Arc<Shared>) -> Result<signal_hook::iterator::Handle, ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Signals)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if shared.stop_flag.swap(true, Ordering::AcqRel) {
                    eprintln!("second signal {sig}: exiting at once");
                    std::process::exit(130);
                }
                info!(signal = sig, "shutting down gracefully");
            }
        })
        .map_err(ServerError::Signals)?;
    Ok(handle)
}

fn describe_source(source: &ConfigSource) -> String {
    match source {
        ConfigSource::Given(p) => p.display().to_string(),
        ConfigSource::DataDir(p) => p.display().to_string(),
        ConfigSource::Created(p) => format!("{} (written with defaults)", p.display()),
    }
}

/// Creates the data directory and takes an exclusive lock on it for the life of the process.
fn lock_data_dir(dir: &Path) -> Result<File, ServerError> {
    let io_err = |source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let lock_path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ServerError::DataDirLocked {
            path: dir.to_path_buf(),
            lock: lock_path,
        });
    }
    Ok(file)
}

/// Resolves port 0 to one free port for all shards, and checks that nobody else listens there:
/// SO_REUSEPORT would otherwise let a second server silently share the port with a first one.
fn resolve_addr(addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    let probe =
        std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    probe
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if rc != 0 {
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads the set filled above.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    if cpus.is_empty() {
        (0..n).collect()
    } else {
        cpus
    }
}

/// Raises RLIMIT_MEMLOCK if the shards' registered io_uring memory would not fit under it.
fn ensure_memlock(shards: usize, io_memory_per_shard: usize) -> Result<(), ServerError> {
    // Registered buffers plus a margin per ring for what the kernel also charges.
    let needed = (shards as u64) * (io_memory_per_shard as u64 + 256 * 1024);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= needed {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: needed,
        rlim_max: lim.rlim_max.max(needed),
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
        return Ok(());
    }
    Err(ServerError::Memlock {
        needed_bytes: needed,
        limit_bytes: lim.rlim_cur,
        shards,
    })
}
