//! One HTTP/1 connection, with the deadlines hyper does not keep for us.
//!
//! - **Head**: a request's head must be complete within `header_timeout` of its first byte
//!   (of the connection's opening, for the first request).
//! - **Idle**: a kept-alive connection with no request in flight is closed after
//!   `idle_timeout` without a byte of the next request.
//! - The **body** deadline is the gate's (`api::gate`), which reads bodies before a request
//!   takes a slot; while a request is in flight (body, handler, streamed response) this module
//!   sets no deadline, since commands legitimately run for minutes.
//!
//! hyper's own `header_read_timeout` is not used: it starts when hyper begins waiting for a
//! head, so it also bounds the idle time between requests, and the two could not differ.
//!
//! Invariant: a connection is always in exactly one phase — awaiting a head, idle, or busy —
//! and only the first two have a deadline; past it, the connection is dropped (closed).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The per-connection deadlines.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deadlines {
    /// From a request's first byte (or the connection's opening) to its complete head.
    pub header: Duration,
    /// From the end of the last response to the first byte of the next request.
    pub idle: Duration,
}

/// Serves `app` on `io` until the client closes, a deadline passes, or `shutdown` is
/// cancelled and the request in flight (if any) has been answered.
pub(super) async fn serve<IO>(io: IO, app: Router, deadlines: Deadlines, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new(deadlines));
    let io = TokioIo::new(Watched { inner: io, clock: clock.clone() });
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::begin(&service_clock);
        let app = app.clone();
        async move {
            let response = app.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| Body::new(Tracked { body, busy: Some(busy) })),
            )
        }
    });
    // hyper's header timeout is off on purpose (see the module docs): the clock keeps both.
    let conn =
        hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended with an error: {e}");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                // Nothing in flight: nothing to finish (hyper alone would wait for a started head).
                if !clock.is_busy() {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            phase = clock.expired() => {
                tracing::debug!(phase, "closing a connection past its deadline");
                return;
            }
        }
    }
}

/// Where a connection is, and since when it must move on.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head(Instant),
    /// Between requests, no byte of the next one yet.
    Idle(Instant),
    /// A request is in flight: no deadline here.
    Busy,
}

/// The phase of one connection, moved by its reads and its requests.
struct Clock {
    deadlines: Deadlines,
    /// Std lock: held for a few instructions, never across an await.
    state: Mutex<State>,
    /// Wakes [`Clock::expired`] when the deadline may have moved earlier.
    changed: Notify,
}

struct State {
    phase: Phase,
    in_flight: usize,
}

impl Clock {
    fn new(deadlines: Deadlines) -> Self {
        let phase = Phase::Head(Instant::now() + deadlines.header);
        Self { deadlines, state: Mutex::new(State { phase, in_flight: 0 }), changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a request is in flight.
    fn is_busy(&self) -> bool {
        matches!(self.lock().phase, Phase::Busy)
    }

    /// Bytes arrived: an idle connection has started a request head.
    fn on_read(&self) {
        let mut state = self.lock();
        if let Phase::Idle(_) = state.phase {
            state.phase = Phase::Head(Instant::now() + self.deadlines.header);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Completes when the current phase's deadline passes; names the phase.
    async fn expired(&self) -> &'static str {
        loop {
            let phase = self.lock().phase;
            let (deadline, name) = match phase {
                Phase::Head(at) => (at, "head"),
                Phase::Idle(at) => (at, "idle"),
                Phase::Busy => {
                    self.changed.notified().await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    // Still the same phase? (A change notifies, but both may be ready at once.)
                    let now = self.lock().phase;
                    if matches!((phase, now), (Phase::Head(a), Phase::Head(b)) | (Phase::Idle(a), Phase::Idle(b)) if a == b) {
                        return name;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

/// A request in flight; dropping the last one makes the connection idle.
struct Busy(Arc<Clock>);

impl Busy {
    fn begin(clock: &Arc<Clock>) -> Self {
        let mut state = clock.lock();
        state.in_flight += 1;
        state.phase = Phase::Busy;
        drop(state);
        clock.changed.notify_one();
        Self(clock.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let clock = &self.0;
        let mut state = clock.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle(Instant::now() + clock.deadlines.idle);
        }
        drop(state);
        clock.changed.notify_one();
    }
}

/// A response body that ends its request's [`Busy`] when it is finished or dropped.
struct Tracked {
    body: Body,
    busy: Option<Busy>,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling the clock when bytes arrive.
struct Watched<IO> {
    inner: IO,
    clock: Arc<Clock>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Arc<Clock> {
        Arc::new(Clock::new(Deadlines { header: Duration::from_secs(10), idle: Duration::from_secs(60) }))
    }

    async fn expires_after(clock: &Clock) -> (&'static str, Duration) {
        let start = Instant::now();
        let phase = clock.expired().await;
        (phase, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_deadline() {
        assert_eq!(expires_after(&clock()).await, ("head", Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_has_no_deadline_then_idle_then_head_from_the_first_byte() {
        let clock = clock();
        let busy = Busy::begin(&clock);
        let waiting = tokio::time::timeout(Duration::from_secs(3600), clock.expired()).await;
        assert!(waiting.is_err(), "no deadline while a request is in flight");
        drop(busy);
        let watch = {
            let clock = clock.clone();
            tokio::spawn(async move { expires_after(&clock).await })
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        // A byte 30 s into the idle minute: the head must now be in within 10 s.
        clock.on_read();
        assert_eq!(watch.await.unwrap(), ("head", Duration::from_secs(40)));
        // More bytes of the same head do not extend it.
        clock.on_read();
        assert_eq!(expires_after(&clock).await.0, "head");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_last_response() {
        let clock = clock();
        drop(Busy::begin(&clock));
        assert_eq!(expires_after(&clock).await, ("idle", Duration::from_secs(60)));
    }
}
