//! One HTTP/1.1 connection on one shard: keep-alive, pipelining, `Expect: 100-continue`, bounded
//! bodies, content codings, timeouts, graceful shutdown.
//!
//! The loop: wait (idle deadline) for the first byte of a request, read its head (absolute
//! deadline), route it, read and decode its body (per-read deadline, route's size bound), answer.
//! Answers are collected in an output buffer and written when no complete request is left in the
//! input, so pipelined requests are answered with one write. A request that cannot be read to its
//! end (a refused head, a body we did not read) is answered and the connection closed, because
//! the next request's start is then unknown.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncWriteExt};
use glommio::net::TcpStream;
use tracing::debug;

use crate::api;
use crate::error::ApiError;
use crate::http::coding::{self, Coding};
use crate::http::deadline::{Deadline, DeadlineReader};
use crate::http::error::HttpError;
use crate::http::request::{self, Framing, HeadLimits, InBuf, Method, ReadError, RequestHead};
use crate::http::response::{self, BodyStream, Chunk, Response, CONTINUE};
use crate::http::route::Route;
use crate::metrics::ShardMetrics;
use crate::server::shard::ShardCtx;

/// First size of a connection's input buffer; it grows up to the header bound when needed.
const INBUF_INITIAL_BYTES: usize = 16 * 1024;
/// Most content codings one request body may stack (each layer costs a full decoding pass).
const CODINGS_STACKED_MAX: usize = 3;
/// After closing our side, unread client bytes are drained for at most this long and this much.
const LINGER_MS: u64 = 1000;
const LINGER_BYTES_MAX: usize = 1 << 20;
/// Output is written once this much is pending, even mid-pipeline.
const OUT_FLUSH_BYTES: usize = 64 * 1024;

/// Serves one accepted connection until the peer closes it, an error ends it, or shutdown.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    let http = &ctx.config.http;
    // Best effort: a socket that refuses these options still works, only slower or less guarded.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(http.body_read_timeout_ms)));
    let idle = Deadline::At(Instant::now());
    let mut conn = Conn {
        reader: DeadlineReader::new(stream, idle),
        inbuf: InBuf::new(INBUF_INITIAL_BYTES, http.header_bytes_max),
        out: Vec::with_capacity(4096),
        ctx: ctx.clone(),
    };
    if let Err(e) = conn.run().await {
        debug!(shard = ctx.id, error = %e, "connection ended");
    }
    if conn.flush().await.is_ok() {
        conn.linger().await;
    }
    conn.count_bytes_in();
}

struct Conn {
    reader: DeadlineReader<TcpStream>,
    inbuf: InBuf,
    out: Vec<u8>,
    ctx: Rc<ShardCtx>,
}

/// What to do with the connection after a request.
#[derive(PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

impl Conn {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            if self.inbuf.is_empty() && !self.wait_for_request().await? {
                return Ok(());
            }
            let http = &self.ctx.config.http;
            let limits = HeadLimits {
                header_bytes_max: http.header_bytes_max,
                headers_count_max: http.headers_count_max,
            };
            let header_deadline =
                Instant::now() + Duration::from_millis(http.header_read_timeout_ms);
            self.reader.set_deadline(Deadline::At(header_deadline));
            let head = match request::read_head(&mut self.reader, &mut self.inbuf, limits).await {
                Ok(Some(head)) => head,
                Ok(None) | Err(ReadError::Eof) => return Ok(()),
                Err(ReadError::Io(e)) => return Err(e),
                Err(ReadError::Http(e)) => {
                    self.answer(None, true, &Err(e.into()), Coding::Identity, true);
                    return Ok(());
                }
            };
            if self.handle(head).await? == After::Close {
                return Ok(());
            }
            if self.out.len() >= OUT_FLUSH_BYTES {
                self.flush().await?;
            }
        }
    }

    /// Flushes pending answers and waits for the next request's first byte. False when the
    /// connection should end: the peer closed it, it idled out, or the shard is stopping.
    async fn wait_for_request(&mut self) -> io::Result<bool> {
        self.flush().await?;
        if self.ctx.stop.is_fired() {
            return Ok(false);
        }
        let idle = Duration::from_millis(self.ctx.config.http.keepalive_idle_timeout_ms);
        self.reader
            .set_deadline(Deadline::At(Instant::now() + idle));
        let Conn {
            reader, inbuf, ctx, ..
        } = self;
        let filled = future::or(async { Some(inbuf.fill(reader).await) }, async {
            ctx.stop.wait().await;
            None
        })
        .await;
        match filled {
            None | Some(Ok(0)) => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Some(Err(e)) => Err(e),
        }
    }

    /// Reads the body of one request, answers it, and says whether the connection goes on.
    async fn handle(&mut self, head: RequestHead) -> io::Result<After> {
        let route = Route::resolve(&head.method, &head.path);
        let with_body = head.method != Method::Head;
        let coding = negotiated(&head);
        let mut close = !head.keep_alive || self.ctx.stop.is_fired();
        let mut result = match (route, self.ctx.stop.is_fired()) {
            (_, true) => Err(HttpError::ShuttingDown.into()),
            (Err(e), false) => Err(e.into()),
            (Ok(route), false) => match self.read_request_body(&head, route).await {
                Ok(body) => api::dispatch(&self.ctx, route, &head, body).await,
                Err(ReadError::Http(e)) => {
                    // The rest of the body was not read: the next request's start is unknown.
                    close = true;
                    Err(e.into())
                }
                Err(ReadError::Eof) => return Ok(After::Close),
                Err(ReadError::Io(e)) => return Err(e),
            },
        };
        if result.is_err() && !self.body_was_read(&head, &result) {
            close = true;
        }
        self.answer(route_of(&head), with_body, &result, coding, close);
        let streamed = result.as_mut().ok().and_then(|r| r.stream.take());
        if let Some(body) = streamed.filter(|_| with_body) {
            if !self.stream_body(body).await? {
                return Ok(After::Close);
            }
        }
        Ok(if close {
            After::Close
        } else {
            After::KeepAlive
        })
    }

    /// Whether the request's body has been consumed, so the connection can carry on after an
    /// error answer. Bodies are read only once a request is routed and the shard is running.
    fn body_was_read(&self, head: &RequestHead, result: &Result<Response, ApiError>) -> bool {
        let refused_before_body = matches!(
            result,
            Err(ApiError::Http(
                HttpError::NotFound { .. }
                    | HttpError::MethodNotAllowed { .. }
                    | HttpError::ShuttingDown
                    | HttpError::BodyTooLarge { .. }
            ))
        );
        head.has_no_body() || !refused_before_body
    }

    async fn read_request_body(
        &mut self,
        head: &RequestHead,
        route: Route,
    ) -> Result<Vec<u8>, ReadError> {
        let ctx = self.ctx.clone();
        let http = &ctx.config.http;
        let limit = route.body_bytes_max(http);
        if let Framing::Length(n) = head.framing {
            if n > limit as u64 {
                return Err(HttpError::BodyTooLarge { limit_bytes: limit }.into());
            }
        }
        if head.expect_continue && !head.has_no_body() {
            self.out.extend_from_slice(CONTINUE);
            self.flush().await?;
        }
        let idle = Duration::from_millis(http.body_read_timeout_ms);
        self.reader.set_deadline(Deadline::Idle(idle));
        let raw =
            request::read_body(&mut self.reader, &mut self.inbuf, head.framing, limit).await?;
        let codings = match head.header_joined("content-encoding") {
            None => return Ok(raw),
            Some(v) => coding::parse_content_encoding(&v).map_err(HttpError::from)?,
        };
        if codings.is_empty() {
            return Ok(raw);
        }
        if codings.len() > CODINGS_STACKED_MAX {
            return Err(HttpError::InvalidHeader {
                name: "content-encoding".into(),
                reason: format!("more than {CODINGS_STACKED_MAX} codings stacked"),
            }
            .into());
        }
        Ok(coding::decode_body(&codings, &raw, limit).map_err(HttpError::from)?)
    }

    /// Serializes an answer into the output buffer and counts it.
    fn answer(
        &mut self,
        route: Option<Route>,
        with_body: bool,
        result: &Result<Response, ApiError>,
        coding: Coding,
        close: bool,
    ) {
        let error_response;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                debug!(shard = self.ctx.id, status = e.status(), error = %e, "request failed");
                error_response = Response::from_error(e);
                &error_response
            }
        };
        self.ctx.metrics.record_request(route, response.status);
        let compressed = compress(response, coding);
        compressed
            .as_ref()
            .unwrap_or(response)
            .write_to(&mut self.out, with_body, close);
    }

    /// Writes a streamed body chunk by chunk, each as soon as it is produced. True when the body
    /// ended with its zero chunk; false when it was aborted (the connection must then close, so
    /// the client sees a truncated body).
    async fn stream_body(&mut self, body: BodyStream) -> io::Result<bool> {
        self.flush().await?;
        loop {
            // Checked before each chunk too: with chunks always ready (a slow reader), the
            // timer below would never win the race.
            let left = body.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                debug!(shard = self.ctx.id, "streamed answer passed its deadline");
                return Ok(false);
            }
            let next = future::or(async { body.chunks.recv().await.ok() }, async {
                glommio::timer::Timer::new(left).await;
                Some(Chunk::Abort("the answer's deadline passed".to_string()))
            })
            .await;
            match next {
                Some(Chunk::Data(data)) => {
                    response::write_chunk(&mut self.out, &data);
                    self.flush().await?;
                }
                Some(Chunk::End) => {
                    self.out.extend_from_slice(response::LAST_CHUNK);
                    self.flush().await?;
                    return Ok(true);
                }
                Some(Chunk::Abort(reason)) => {
                    debug!(shard = self.ctx.id, %reason, "streamed answer aborted");
                    return Ok(false);
                }
                None => {
                    debug!(shard = self.ctx.id, "streamed answer's producer vanished");
                    return Ok(false);
                }
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.count_bytes_in();
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self.reader.get_mut();
        stream.write_all(&self.out).await?;
        ShardMetrics::add(&self.ctx.metrics.bytes_out, self.out.len() as u64);
        self.out.clear();
        Ok(())
    }

    /// Closes our side, then reads and drops what the client still sends, briefly and bounded.
    /// Closing with unread bytes in the socket makes the kernel send a reset, which can destroy
    /// the answer we just wrote before the client reads it (a 413 or 431 would never be seen).
    async fn linger(&mut self) {
        let stream = self.reader.get_mut();
        if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
            return;
        }
        self.reader.set_deadline(Deadline::At(
            Instant::now() + Duration::from_millis(LINGER_MS),
        ));
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES_MAX {
            match futures_lite::AsyncReadExt::read(&mut self.reader, &mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    fn count_bytes_in(&mut self) {
        ShardMetrics::add(&self.ctx.metrics.bytes_in, self.reader.take_bytes_read());
    }
}

fn route_of(head: &RequestHead) -> Option<Route> {
    Route::resolve(&head.method, &head.path).ok()
}

/// The response coding the client asked for; an unusable header falls back to identity here
/// (routes that must refuse it, like SQL, check it themselves).
fn negotiated(head: &RequestHead) -> Coding {
    head.header_joined("accept-encoding")
        .and_then(|v| coding::negotiate(&v).ok())
        .unwrap_or(Coding::Identity)
}

/// A compressed copy of a successful non-empty answer, when a coding was negotiated.
fn compress(response: &Response, coding: Coding) -> Option<Response> {
    if coding == Coding::Identity || response.body.is_empty() || response.status >= 300 {
        return None;
    }
    let body = coding::encode_body(coding, &response.body).ok()?;
    let mut headers = response.headers.clone();
    headers.push(("Content-Encoding", coding.name().to_string()));
    headers.push(("Vary", "Accept-Encoding".to_string()));
    Some(Response {
        status: response.status,
        content_type: response.content_type,
        headers,
        body,
        stream: None,
    })
}
