//! The HTTP listener: accepts TCP connections and serves the router over HTTP/1.1 and HTTP/2
//! (with WebSocket upgrades) under limits that `axum::serve` does not offer:
//!
//! - a header-read timeout (hyper's): a request head must arrive whole within it (slowloris), and
//!   since hyper starts it when a kept-alive connection waits for its next request, an idle
//!   keep-alive connection is closed after it too;
//! - an idle timeout on the socket itself: no byte read or written for that long and the
//!   connection is closed (a stalled body upload, a peer that stops reading our answer, a silent
//!   upgraded socket);
//! - a cap on open connections: past it a new connection is closed at once and counted.
//!
//! It also hands each request its peer address (`ConnectInfo<SocketAddr>`) for the failed-auth
//! throttle. It owns sockets and timers; it must not route, authenticate or know about calls.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

pub use crate::config::HttpLimits;
use crate::metrics::Metrics;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets requests in
/// flight finish (up to a grace period). Media sockets already upgraded are not waited for.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: count, breathe, go on.
                    metrics.error("http_accept_failed");
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.error("http_connection_limit");
            debug!(%remote, "connection limit reached; closing the new connection");
            drop(tcp);
            continue;
        };
        // Audio frames are small writes that must leave at once: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let mut app = app.clone();
            async move { tower_service::Service::call(&mut app, request).await }
        });
        let io = TokioIo::new(IdleTimeout::new(tcp, limits.idle_timeout));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        builder.http2().timer(TokioTimer::new());
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    info!("listener closed; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            warn!("requests still in flight after the shutdown grace period");
        }
    }
}

/// A socket that fails with `TimedOut` once no byte moved either way for `timeout`. The timer is
/// polled whenever a read or write is pending, so it fires even when the peer stops reading.
struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// A write's outcome: bytes written count as activity; a write still pending past the idle
    /// limit fails, so a peer that stops reading is cut off.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_times_out_and_traffic_keeps_it_open() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut guarded = IdleTimeout::new(near, Duration::from_secs(5));
        let mut byte = [0u8; 1];
        // Traffic every 4 s keeps it alive past 5 s.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(4)).await;
            far.write_all(b"x").await.expect("write");
            guarded.read_exact(&mut byte).await.expect("read");
        }
        // Then silence: the pending read fails once 5 s passed.
        let err = guarded.read(&mut byte).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        let (near, _far) = tokio::io::duplex(8);
        let mut guarded = IdleTimeout::new(near, Duration::from_secs(5));
        // 8 bytes fit the pipe, then writes stay pending: the timer still fires.
        let err = guarded
            .write_all(&[0u8; 64])
            .await
            .expect_err("a stalled write ends");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
