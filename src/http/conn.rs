//! Serving an axum router over HTTP/1.1 on connections accepted by
//! `listen::Capped` (plain, or through the TLS acceptor), with a deadline
//! for each request's headers. `axum::serve` sets neither a header timeout
//! nor a connection cap, so a client could hold a connection forever by
//! sending half a request.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;
use tower::ServiceExt;

use crate::server::listen::Conn;
use crate::server::tls::Idle;

/// Connections still open at shutdown get this long to finish their
/// request before they are dropped.
const DRAIN: Duration = Duration::from_secs(5);

/// The peer of an accepted connection, whatever wraps the TCP stream.
pub trait RemoteAddr {
    fn remote_addr(&self) -> Option<SocketAddr>;
}

impl RemoteAddr for Idle<Conn> {
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.connect_info().remote_addr()
    }
}

impl RemoteAddr for Idle<TlsStream<Conn>> {
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.connect_info().get_ref().remote_addr()
    }
}

/// Serves `router` on each connection `incoming` yields until `shutdown`
/// completes; handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve<IO>(
    listener: &'static str,
    incoming: impl Stream<Item = std::io::Result<IO>> + Send + 'static,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    IO: AsyncRead + AsyncWrite + RemoteAddr + Send + Unpin + 'static,
{
    let mut incoming = std::pin::pin!(incoming);
    let mut shutdown = std::pin::pin!(shutdown);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        let io = tokio::select! {
            () = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(io)) => io,
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "accept failed");
                    continue;
                }
                None => break,
            },
        };
        let peer = io
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            // A panicking handler answers 500 and is counted, instead of
            // dropping the connection unexplained.
            .map_future(move |future| async move {
                match crate::telemetry::panics::Caught::new(future).await {
                    Ok(result) => result,
                    Err(payload) => {
                        crate::telemetry::panics::record(listener, "http", payload.as_ref());
                        Ok(axum::response::IntoResponse::into_response((
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            "internal error\n",
                        )))
                    }
                }
            });
        let connection = builder.serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the drain; dropping them");
    }
}
