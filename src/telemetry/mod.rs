//! Logs, the per-RPC span, and Prometheus metrics.
//!
//! Every RPC runs in one `rpc` span (method, request id, caller, code,
//! duration) and ends with one log line; its count and latency go to
//! Prometheus by method and code. Secrets are never fields.

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub mod catalogue;
pub mod panics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of an RPC: the caller's `x-request-id` when it is a
/// plain token, else a new one. Handlers find it in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The RPC being served, for the audit trail: its short method name and
/// request id. Set around every call by `RpcLayer`; absent outside an RPC
/// (the command line, background tasks).
#[derive(Clone)]
pub struct Rpc {
    pub method: &'static str,
    pub request_id: String,
    pub peer: Option<std::net::SocketAddr>,
    refusals: Option<RefusalSink>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("method", &self.method)
            .field("request_id", &self.request_id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Where credentials refused before any handler runs (by an interceptor,
/// or by the input validator in the codec) go: the audit trail's way in,
/// given by the server. Called with the reason, the kind of credential and
/// the peer.
pub type RefusalSink =
    std::sync::Arc<dyn Fn(&'static str, &'static str, Option<std::net::SocketAddr>) + Send + Sync>;

/// Reports a credential refused before any handler ran, to the sink of the
/// RPC being served (none outside an RPC).
pub fn refused_early(reason: &'static str, credential: &'static str) {
    let _ = RPC.try_with(|rpc| {
        if let Some(sink) = &rpc.refusals {
            sink(reason, credential, rpc.peer);
        }
    });
}

tokio::task_local! {
    static RPC: Rpc;
}

/// The RPC the current task serves, if any.
pub fn current_rpc() -> Option<Rpc> {
    RPC.try_with(Clone::clone).ok()
}

/// Runs `work` as one request of another transport (the console), so the
/// audit trail names it, its request id and its peer as it does an RPC's.
pub async fn in_request<F: Future>(
    method: &'static str,
    request_id: String,
    peer: Option<std::net::SocketAddr>,
    work: F,
) -> F::Output {
    let rpc = Rpc {
        method,
        request_id,
        peer,
        refusals: None,
    };
    RPC.scope(rpc, work).await
}

/// `Check`, not `/envoy.service.auth.v3.Authorization/Check`: the service
/// is implied, and no two services share a method name.
fn short_method(method: &'static str) -> &'static str {
    method.rsplit('/').next().unwrap_or(method)
}

/// The client's address, as tonic's `Request::remote_addr` finds it.
fn peer_of<B>(request: &Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// Ids are logged and echoed: only `[A-Za-z0-9._:-]{1,128}` is taken as is.
fn acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Text-format fields as `name=value`, where any value that is not a plain
/// token is quoted and escaped: a caller-chosen value (a username with
/// spaces, an `=`, a newline) cannot pass for another field or line.
fn quoted_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            return write!(w, "{text}");
        }
        let plain = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
        if plain || is_quoted(&text) {
            write!(w, "{}={text}", field.name())
        } else {
            write!(w, "{}={text:?}", field.name())
        }
    })
    .delimited(" ")
}

/// `text` is one string as `Debug` writes it: quoted, with every inner
/// quote, backslash and control character escaped.
fn is_quoted(text: &str) -> bool {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' || (c != '\'' && c.escape_debug().nth(1).is_some()) {
            // Debug output holds no raw quote, control, line separator or
            // other character it would escape.
            return false;
        }
    }
    !escaped
}

pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log.format {
        LogFormat::Text => builder.fmt_fields(quoted_fields()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            catalogue::describe();
            process_collector().describe();
            Some(handle)
        })
        .as_ref()
}

/// CPU, memory, open descriptors and start time of this process, read
/// from /proc at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Serves `GET /metrics` (Prometheus text), and the token signing keys as
/// `GET /.well-known/jwks.json` (JWT libraries fetch keys over HTTP), until
/// `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    limits: crate::config::ConnectionLimits,
    jwks: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::http::conn;
    use crate::server::{listen, tls};
    let Some(handle) = metrics_handle() else {
        return Err(std::io::Error::other("metrics recorder unavailable"));
    };
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                process_collector().collect();
                handle.render()
            }),
        )
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { crate::http::well_known::jwks_response(jwks) }
            }),
        );
    let incoming = tls::plain_idle(
        listen::Capped::new(listener, limits.max_connections, "metrics"),
        limits.idle,
    );
    conn::serve(
        "metrics",
        incoming,
        app,
        limits.header_read_timeout,
        shutdown,
    )
    .await;
    Ok(())
}

/// gRPC status names, for the `code` label and log field.
fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Wraps the gRPC server: one span, one log line and two metrics per RPC,
/// and the deadline: the client's `grpc-timeout` or `request_timeout`,
/// whichever is shorter.
#[derive(Clone)]
pub struct RpcLayer {
    pub request_timeout: Duration,
    pub refusals: Option<RefusalSink>,
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            request_timeout: self.request_timeout,
            refusals: self.refusals.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    request_timeout: Duration,
    refusals: Option<RefusalSink>,
}

/// `grpc-timeout`: an integer of at most 8 digits and a unit.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B, R> Service<Request<B>> for RpcService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is ready only if polled; the polled one goes to this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = known_method(request.uri().path());
        let peer = peer_of(&request);
        let refusals = self.refusals.clone();
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable_request_id(v))
            .map_or_else(new_request_id, str::to_owned);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        // The checks run thousands of times a second: their span (fields
        // formatted at creation) exists only at debug; a failed check still
        // logs its method and request id on the closing line.
        let check = method.starts_with("/authz.v1.AuthService/") || method == ENVOY_CHECK;
        let span = if check {
            tracing::debug_span!("rpc", method, request_id = %request_id, caller = tracing::field::Empty)
        } else {
            tracing::info_span!("rpc", method, request_id = %request_id, caller = tracing::field::Empty)
        };
        let started = Instant::now();
        let budget = grpc_timeout(request.headers())
            .map_or(self.request_timeout, |t| t.min(self.request_timeout));
        Box::pin(async move {
            // Past the deadline the work is dropped: a query in flight is
            // abandoned and a transaction rolls back.
            let mut result = match tokio::time::timeout(
                budget,
                RPC.scope(
                    Rpc {
                        method: short_method(method),
                        request_id: request_id.clone(),
                        peer,
                        refusals,
                    },
                    panics::Caught::new(async move { inner.call(request).await }),
                )
                .instrument(span.clone()),
            )
            .await
            {
                Ok(Ok(result)) => result,
                Ok(Err(payload)) => {
                    span.in_scope(|| panics::record("grpc", method, payload.as_ref()));
                    Ok(tonic::Status::internal("internal error").into_http())
                }
                Err(_) => Ok(tonic::Status::deadline_exceeded(
                    "the request did not finish within its deadline",
                )
                .into_http()),
            };
            if let Ok(response) = &mut result {
                framing_errors_are_the_callers(response.headers_mut());
            }
            let elapsed = started.elapsed();
            let code = match &result {
                // Unary tonic responses put a failure's status in the
                // headers (trailers-only); success ends with OK trailers.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                Err(_) => 2,
            };
            let code = code_name(code);
            let (count, duration) = rpc_metrics(method, code);
            count.increment(1);
            duration.record(elapsed.as_secs_f64());
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            span.in_scope(|| {
                // Probes, and successful checks (the metrics count them),
                // would drown the log at info.
                let routine = method.starts_with("/grpc.health.")
                    || method.starts_with("/grpc.reflection.")
                    || (check && code == "OK");
                if routine {
                    tracing::debug!(code, duration_ms, "rpc finished");
                } else if check {
                    tracing::info!(method, request_id = %request_id, code, duration_ms, "rpc finished");
                } else {
                    tracing::info!(code, duration_ms, "rpc finished");
                }
            });
            result.map(|mut response| {
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                response
            })
        })
    }
}

/// tonic answers a request body it cannot frame (no message, a frame cut
/// short, an unknown compression flag) with INTERNAL before any code of
/// ours runs. Those are the caller's mistakes: INVALID_ARGUMENT, so that
/// INTERNAL keeps meaning a bug. (A compressed flag without `grpc-encoding`
/// stays INTERNAL, as the gRPC spec requires.)
fn framing_errors_are_the_callers(headers: &mut http::HeaderMap) {
    const CALLERS: [&str; 3] = [
        "Missing request message.",
        "Unexpected EOF decoding stream.",
        "protocol error: received message with invalid compression flag",
    ];
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"13") {
        return;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decoded)
    else {
        return;
    };
    if !CALLERS.iter().any(|known| message.starts_with(known)) {
        return;
    }
    let text = format!("request: {}", message.trim_end_matches('.'));
    let encoded: String = text
        .bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    headers.insert("grpc-status", HeaderValue::from_static("3"));
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Envoy's ext_authz Check: a check RPC, as hot as Authenticate.
const ENVOY_CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The gRPC methods authzd serves, as `&'static str` labels; any other path
/// is "unknown", so invented paths cannot grow the metrics.
fn known_method(path: &str) -> &'static str {
    static KNOWN: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut known = HashMap::new();
        for set in [
            crate::pb::FILE_DESCRIPTOR_SET,
            crate::pb::ENVOY_FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path =
                            format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        known.insert(path.clone(), &*Box::leak(path.into_boxed_str()));
                    }
                }
            }
        }
        for reflection in [
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            known.insert(reflection.to_owned(), reflection);
        }
        known
    });
    known.get(path).copied().unwrap_or("unknown")
}

type RpcMetrics = (metrics::Counter, metrics::Histogram);

/// Registered once per (method, code): the registry lookup and the label
/// allocations stay off the per-call path.
fn rpc_metrics(method: &'static str, code: &'static str) -> RpcMetrics {
    static HANDLES: OnceLock<RwLock<HashMap<(&str, &str), RpcMetrics>>> = OnceLock::new();
    let handles = HANDLES.get_or_init(Default::default);
    if let Some(found) = handles
        .read()
        .ok()
        .and_then(|h| h.get(&(method, code)).cloned())
    {
        return found;
    }
    let made = (
        metrics::counter!("authzd_rpc_requests_total", "method" => method, "code" => code),
        metrics::histogram!("authzd_rpc_duration_seconds", "method" => method, "code" => code),
    );
    if let Ok(mut h) = handles.write() {
        h.insert((method, code), made.clone());
    }
    made
}

/// A request id for a request that brought none: unique in this process
/// and across restarts, without a system call per request.
fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(rand::random::<u64>);
    format!(
        "{prefix:016x}-{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Names who is calling on the current RPC span.
/// A log line for a condition that may repeat on every request (a stuck
/// database, a rate-limited source): written at most once a second, with
/// how many the silence hid.
pub struct LogThrottle {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub const fn new() -> Self {
        Self {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}

pub fn record_caller(caller: &str) {
    tracing::Span::current().record("caller", caller);
}

#[cfg(test)]
mod deadline_tests {
    use std::time::Duration;

    use super::grpc_timeout;

    #[test]
    fn grpc_timeout_headers_parse_by_their_unit() {
        let parse = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(parse("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("123456789S"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("10x"), None);
    }
}

#[cfg(test)]
mod quoting_tests {
    use super::is_quoted;

    #[test]
    fn only_whole_escaped_strings_count_as_quoted() {
        assert!(is_quoted(&format!("{:?}", "a \"b\" c\nd")));
        assert!(is_quoted("\"\""));
        assert!(!is_quoted("\"a\" b=\"c\""));
        assert!(!is_quoted("\"a\\\""));
        assert!(!is_quoted("plain"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn envoys_check_is_a_method_of_its_own_and_a_check() {
        // Not "unknown": its metrics have their own label, and a
        // successful Check is not logged at info (a hot path).
        assert_eq!(super::known_method(super::ENVOY_CHECK), super::ENVOY_CHECK);
        assert_eq!(super::known_method("/x.v1.Y/Z"), "unknown");
    }
}
