//! A tiny threaded HTTP/1.1 server on 127.0.0.1 for the drivers' tests.
//!
//! It accepts on an ephemeral port, reads requests framed by Content-Length, and lets the test's
//! handler decide each answer (send it, send it and close, or drop the connection unanswered).
//! Everything is bounded: the accept loop ends after 30 s or when the server is dropped, and a
//! connection ends after 2 s of silence.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the server does with one complete request.
pub enum Answer {
    Send(&'static [u8]),
    SendAndClose(&'static [u8]),
    /// Close the connection without answering.
    Drop,
}

/// The handler: the test's state, the request head (text), the request body.
type Handler<S> = dyn Fn(&S, &str, &[u8]) -> Answer + Send + Sync;

pub struct TestServer<S> {
    pub addr: SocketAddr,
    /// What the handler recorded.
    pub state: Arc<S>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept_loop: Option<thread::JoinHandle<()>>,
}

impl<S: Send + Sync + 'static> TestServer<S> {
    pub fn start(
        state: S,
        handler: impl Fn(&S, &str, &[u8]) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(state);
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler<S>> = Arc::new(handler);
        let (s, a, st) = (state.clone(), accepted.clone(), stop.clone());
        let accept_loop = thread::spawn(move || accept_loop(&listener, &s, &handler, &a, &st));
        TestServer {
            addr,
            state,
            accepted,
            stop,
            accept_loop: Some(accept_loop),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl<S> Drop for TestServer<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept_loop.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop<S: Send + Sync + 'static>(
    listener: &TcpListener,
    state: &Arc<S>,
    handler: &Arc<Handler<S>>,
    accepted: &AtomicUsize,
    stop: &AtomicBool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (s, h) = (state.clone(), handler.clone());
                thread::spawn(move || serve(stream, &*s, &*h));
            }
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Answers every complete request on one connection until EOF, an error, 2 s of silence, or
/// the handler's drop or close.
fn serve<S>(mut stream: TcpStream, state: &S, handler: &Handler<S>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((head, body_at, len)) = complete_request(&pending) {
            let answer = handler(state, &head, &pending[body_at..body_at + len]);
            pending.drain(..body_at + len);
            let (bytes, close) = match answer {
                Answer::Drop => return,
                Answer::Send(b) => (b, false),
                Answer::SendAndClose(b) => (b, true),
            };
            if stream.write_all(bytes).is_err() || close {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The head, where the body starts and its length, once a request is complete.
fn complete_request(buf: &[u8]) -> Option<(String, usize, usize)> {
    let body_at = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..body_at]).into_owned();
    let len = header(&head, "content-length").map_or(0, |v| v.parse().expect("length"));
    (buf.len() >= body_at + len).then_some((head, body_at, len))
}

/// The value of header `name` (matched case-insensitively).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}
