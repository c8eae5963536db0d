//! The host names the console answers: a page served from any other name
//! (a DNS-rebinding attacker's, pointed at a loopback console) is refused
//! before anything else of the group runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The hosts a request may name: a page served from any other name (a
/// DNS-rebinding attacker's, pointed at a loopback console) is refused
/// before anything else runs.
pub struct Hosts {
    names: Vec<String>,
    localhost: bool,
}

impl Hosts {
    pub fn new(listen: std::net::IpAddr, public_hosts: &[String]) -> Self {
        Self {
            names: public_hosts
                .iter()
                .map(|h| host_name(h).to_ascii_lowercase())
                .collect(),
            localhost: listen.is_loopback() || listen.is_unspecified(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        // An address names no one else's site: rebinding needs a name.
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        (self.localhost && name == "localhost") || self.names.contains(&name)
    }
}

/// `host[:port]` or `[v6]:port`, without the port and brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

pub async fn known_host(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if hosts.allows(host) => next.run(request).await,
        _ => {
            tracing::debug!(
                host = host.unwrap_or("(none)"),
                "console request for an unknown host refused"
            );
            (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CACHE_CONTROL, "no-store")],
                "This console is not served under that host name (console.public_hosts).\n",
            )
                .into_response()
        }
    }
}
