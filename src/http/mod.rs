//! The HTTP face: one listener (the console's, with the gRPC port's TLS
//! material) serving route groups, each with the posture its clients
//! need, under layers every group shares.
//!
//! - **console** (`console/`): signed-in pages; cross-site POSTs refused,
//!   `SameSite=Strict` cookies, `form-action 'self'`, known host names only.
//! - **well-known** (`well_known.rs`): public documents (the token signing
//!   keys), cacheable, no cookies.
//!
//! - **sso** (`sso.rs`): what identity providers reach (the SP metadata
//!   of each SAML provider); public, no cookies.
//!
//! - **scim** (`scim.rs`): identity providers' provisioning clients;
//!   bearer tokens of one provider each, no cookies, SCIM JSON.
//!
//! Shared by every group (`around`): the request id and the audit scope
//! (the name comes from the group's route table), metrics by matched
//! route, the request timeout, a body limit, and safe defaults for the
//! headers a group did not set.

pub mod conn;
pub mod console;
mod hosts;
mod scim;
mod sso;
mod table;
pub(crate) mod well_known;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::domain::Core;

pub use table::{Names, Table};

/// No request body of any group is larger: forms are a few KiB, a SAML
/// response or a SCIM document some hundreds.
const MAX_BODY_BYTES: u64 = 1024 * 1024;
const MAX_BODY_BYTES_USIZE: usize = 1024 * 1024;

/// What the face is assembled from.
pub struct Face {
    pub core: Core,
    /// Served over TLS: the console's cookies get `Secure` and `__Host-`.
    pub secure: bool,
    /// The host names the console answers besides its address.
    pub public_hosts: Vec<String>,
    pub request_timeout: Duration,
}

/// Every group's routes under the shared layers. `listen` is the address
/// bound: a loopback or unspecified one also answers `localhost`.
pub fn router(face: Face, listen: std::net::IpAddr) -> Router {
    let jwks = face.core.tokens().keys().jwks().to_owned();
    let (sso, sso_names) = sso::router(face.core.clone());
    let (scim, scim_names) = scim::router(face.core.clone());
    let (console, console_names) = console::router(
        face.core,
        face.secure,
        hosts::Hosts::new(listen, &face.public_hosts),
    );
    let (well_known, well_known_names) = well_known::router(jwks);
    let shared = Arc::new(Shared {
        names: console_names
            .merge(&well_known_names)
            .merge(&sso_names)
            .merge(&scim_names),
        request_timeout: face.request_timeout,
    });
    console
        .merge(well_known)
        .merge(sso)
        .merge(scim)
        .layer(middleware::from_fn_with_state(shared, around))
}

struct Shared {
    names: Names,
    request_timeout: Duration,
}

/// Around every request of every group.
async fn around(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let name = shared
        .names
        .of(request.method(), route.as_deref(), "http:Unmatched");
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES);
    let mut response = if too_large {
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
    } else {
        // A body sent in chunks meets the same bound as it is read.
        let request = request.map(|body| {
            axum::body::Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES_USIZE))
        });
        let work = crate::telemetry::in_request(name, request_id.clone(), peer, next.run(request));
        match tokio::time::timeout(shared.request_timeout, work).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(
                    route = route.as_deref().unwrap_or("unmatched"),
                    "HTTP request timed out"
                );
                (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response()
            }
        }
    };
    // Counted like RPCs, by route template (bounded labels: a path no
    // route knows is one "unmatched").
    let labels = [
        ("method", method.to_owned()),
        ("route", route.unwrap_or_else(|| "unmatched".to_owned())),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("authzd_http_requests_total", &labels).increment(1);
    metrics::histogram!("authzd_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    let headers = response.headers_mut();
    // Defaults for what a group left unset: nothing is sniffed, framed,
    // referred or kept.
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert(crate::telemetry::REQUEST_ID_HEADER, id);
    }
    response
}

/// TLS for the HTTP face: the gRPC port's certificate and client CA, with
/// HTTP/1.1 instead of h2.
pub fn tls_config(files: &crate::config::TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let grpc = crate::server::tls::server_config(files)?;
    let mut config = (*grpc).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the face on `listener` until `shutdown` completes: over TLS
/// when `tls` is set (handshakes run concurrently, each in its own task, so
/// a client that stalls holds up no one), within `limits` either way.
pub async fn serve(
    listener: TcpListener,
    limits: crate::config::ConnectionLimits,
    face: Face,
    tls: Option<crate::server::tls::LiveTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::server::listen;
    let router = router(face, listener.local_addr()?.ip());
    let listener = listen::Capped::new(listener, limits.max_connections, "console");
    match tls {
        Some(config) => {
            let incoming = crate::server::tls::tls(listener, config, limits.idle);
            conn::serve(
                "console",
                incoming,
                router,
                limits.header_read_timeout,
                shutdown,
            )
            .await;
        }
        None => {
            let incoming = crate::server::tls::plain_idle(listener, limits.idle);
            conn::serve(
                "console",
                incoming,
                router,
                limits.header_read_timeout,
                shutdown,
            )
            .await;
        }
    }
    Ok(())
}
