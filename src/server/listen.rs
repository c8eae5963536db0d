//! What an unauthenticated peer can hold on a listener: at most
//! `max_connections` accepted connections at once, each closed after
//! `idle` without a byte from the peer. At the cap, the listener stops
//! accepting: further connections wait in the kernel's backlog, costing no
//! descriptor of ours, so a flood on one port cannot take the descriptors
//! the others (and the database pool) need.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::PollSemaphore;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// After a failed accept (e.g. EMFILE), the listener waits this long
/// instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepted connections of one listener, at most `max_connections` open
/// at once, with `TCP_NODELAY` (a response written in two pieces must not
/// wait for the peer's delayed ACK). Accept errors are logged and retried
/// after a pause; the stream never ends.
pub struct Capped {
    listener: TcpListener,
    slots: PollSemaphore,
    held: Option<OwnedSemaphorePermit>,
    backoff: Option<Pin<Box<Sleep>>>,
    name: &'static str,
}

impl Capped {
    /// `name` labels the open-connections gauge (`grpc`, `console`, …).
    pub fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        metrics::gauge!("authzd_open_connections", "listener" => name).set(0.0);
        Self {
            listener,
            slots: PollSemaphore::new(Arc::new(Semaphore::new(max_connections.max(1)))),
            held: None,
            backoff: None,
            name,
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once a slot is free.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Conn> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.held.is_none() {
                // The semaphore is never closed: `None` cannot happen.
                match ready!(self.slots.poll_acquire(cx)) {
                    Some(permit) => self.held = Some(permit),
                    None => return Poll::Pending,
                }
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let gauge = metrics::gauge!("authzd_open_connections", "listener" => self.name);
                    gauge.increment(1.0);
                    return Poll::Ready(Conn {
                        io: stream,
                        _slot: Slot {
                            _permit: self.held.take(),
                            gauge,
                        },
                    });
                }
                Err(err) => {
                    tracing::debug!(listener = self.name, error = %err, "accept failed");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }

    pub async fn accept(&mut self) -> Conn {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }
}

impl tokio_stream::Stream for Capped {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx).map(|conn| Some(Ok(conn)))
    }
}

/// A connection's place under its listener's cap, given back when the
/// connection is dropped.
struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    gauge: metrics::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// An accepted TCP connection holding its slot.
pub struct Conn {
    io: TcpStream,
    _slot: Slot,
}

impl Conn {
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.io.peer_addr().ok()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The descriptors this process may open now (the soft limit).
pub fn descriptor_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// The descriptors this process may open: the soft limit, raised first to
/// the hard limit (a container's soft limit is often 1,024 while its hard
/// limit is far higher).
pub fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::debug!(error = %err, "cannot raise the descriptor limit");
            descriptor_limit()
        }
    }
}
