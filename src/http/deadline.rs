//! A reader with a deadline, so no client can hold a connection by sending slowly.
//!
//! Two modes: `At` is an absolute deadline (a request head must be complete by then, however the
//! bytes trickle in), `Idle` allows each read this long to make progress (bodies, which may be
//! large but must keep moving). A missed deadline is an `io::ErrorKind::TimedOut` error.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, Future};
use glommio::timer::Timer;

#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    At(Instant),
    Idle(Duration),
}

pub struct DeadlineReader<R> {
    inner: R,
    deadline: Deadline,
    timer: Option<Timer>,
    bytes_read: u64,
}

impl<R> DeadlineReader<R> {
    pub fn new(inner: R, deadline: Deadline) -> Self {
        DeadlineReader {
            inner,
            deadline,
            timer: None,
            bytes_read: 0,
        }
    }

    pub fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = deadline;
        self.timer = None;
    }

    /// Bytes read since the last call (for the bytes-in counter).
    pub fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn arm(&mut self) -> &mut Timer {
        let wait = match self.deadline {
            Deadline::At(when) => when.saturating_duration_since(Instant::now()),
            Deadline::Idle(d) => d,
        };
        self.timer.get_or_insert_with(|| Timer::new(wait))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DeadlineReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if let Ok(n) = &r {
                    this.bytes_read += *n as u64;
                }
                if let Deadline::Idle(_) = this.deadline {
                    this.timer = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => match Pin::new(this.arm()).poll(cx) {
                Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client too slow: read deadline passed",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
