//! An IdP's metadata fetched from its address (`idp_metadata_url`):
//! bounded in size, time and redirects, over HTTPS checked against the
//! web's public roots. The document carries the certificates every
//! response is verified with, so plain HTTP is taken only from a loopback
//! address, where nobody can sit in the middle.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

use super::metadata::MAX_METADATA_BYTES;
/// The whole fetch, redirects included: well inside the RPC's own
/// deadline (`server.request_timeout_ms`, 10 s by default).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REDIRECTS: usize = 3;
const FIELD: &str = "idp_metadata_url";

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(FIELD, reason)
}

/// The address, if it is one authzd fetches from.
pub fn check_address(url: &str) -> Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("is not an absolute http(s) address"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("is not an absolute http(s) address"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not carry a user name or password"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(authority.host()) => Ok(uri),
        Some("http") => Err(invalid(
            "must be https (plain http only to a loopback address): the document \
             names the certificates responses are verified with",
        )),
        _ => Err(invalid("is not an absolute http(s) address")),
    }
}

fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || bare_host(host)
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The document at `url`, as text.
pub async fn fetch(url: &str) -> Result<String> {
    let first = check_address(url)?;
    let walk = async {
        let mut uri = first;
        for _ in 0..=MAX_REDIRECTS {
            match get(&uri).await? {
                Fetched::Document(text) => return Ok(text),
                Fetched::Redirect(location) => {
                    let next = redirected(&uri, &location)?;
                    if uri.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                        return Err(invalid("redirects from https to plain http"));
                    }
                    uri = next;
                }
            }
        }
        Err(invalid(format!(
            "redirects more than {MAX_REDIRECTS} times"
        )))
    };
    tokio::time::timeout(FETCH_TIMEOUT, walk)
        .await
        .unwrap_or_else(|_| {
            Err(invalid(format!(
                "did not answer within {} s",
                FETCH_TIMEOUT.as_secs()
            )))
        })
}

enum Fetched {
    Document(String),
    Redirect(String),
}

/// Where a redirect leads: an absolute address, or a path on the same
/// origin.
fn redirected(from: &http::Uri, location: &str) -> Result<http::Uri> {
    if location.starts_with('/') && !location.starts_with("//") {
        let (Some(scheme), Some(authority)) = (from.scheme_str(), from.authority()) else {
            return Err(invalid("redirects somewhere unreadable"));
        };
        return check_address(&format!("{scheme}://{authority}{location}"));
    }
    check_address(location)
}

fn tls() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .ok()
        .map(|b| {
            let mut config = b.with_root_certificates(roots).with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
    });
    match config {
        Some(config) => tokio_rustls::TlsConnector::from(config.clone()),
        // The ring provider offers the safe defaults: unreachable, but an
        // empty configuration would only fail every handshake.
        None => tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )),
    }
}

async fn get(uri: &http::Uri) -> Result<Fetched> {
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("is not an absolute http(s) address"))?;
    let host = bare_host(authority.host()).to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let unreachable = |e: &dyn std::fmt::Display| invalid(format!("could not be fetched: {e}"));
    // One answer however the connection failed (refused, no route, no
    // such name): the field is no probe of which ports answer where.
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|_| invalid("could not be reached"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "authzd")
        .header(
            header::ACCEPT,
            "application/samlmetadata+xml, application/xml, text/xml",
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let response = if https {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| invalid("names a host TLS cannot verify"))?;
        let stream = tls()
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        send(stream, request).await?
    } else {
        send(tcp, request).await?
    };
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| invalid(format!("answered HTTP {status} without a Location")))?;
        return Ok(Fetched::Redirect(location.to_owned()));
    }
    if !status.is_success() {
        return Err(invalid(format!("answered HTTP {}", status.as_u16())));
    }
    let body = Limited::new(response.into_body(), MAX_METADATA_BYTES)
        .collect()
        .await
        .map_err(|_| {
            invalid(format!(
                "is larger than {} KiB, or broke off",
                MAX_METADATA_BYTES / 1024
            ))
        })?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map(Fetched::Document)
        .map_err(|_| invalid("answered a document that is not UTF-8"))
}

async fn send<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| invalid(format!("could not be fetched: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    // Ends with the response, or when the fetch is given up; never
    // outlives the fetch's own bound by more than a second (the fetch's
    // timer, started first, answers first).
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FETCH_TIMEOUT + Duration::from_secs(1), connection).await;
    });
    sender.send_request(request).await.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_addresses_are_fetched() {
        for ok in [
            "https://idp.example.com/metadata",
            "http://127.0.0.1:8080/metadata",
            "http://localhost/m",
            "http://[::1]:9/m",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com/metadata",
            "ftp://idp.example.com/m",
            "file:///etc/passwd",
            "/metadata",
            "https://user:pw@idp.example.com/m",
            "http://127.0.0.1.example.com/m",
        ] {
            assert!(
                matches!(check_address(bad), Err(Error::InvalidArgument { field, .. }) if field == FIELD),
                "{bad}"
            );
        }
    }

    #[test]
    fn redirects_resolve_on_the_same_origin_or_absolutely() {
        let from: http::Uri = "https://idp.example.com/a/b".parse().unwrap();
        assert_eq!(
            redirected(&from, "/c").unwrap().to_string(),
            "https://idp.example.com/c"
        );
        assert_eq!(
            redirected(&from, "https://other.example.com/d")
                .unwrap()
                .to_string(),
            "https://other.example.com/d"
        );
        // Protocol-relative and plain-http redirects are not followed.
        assert!(redirected(&from, "//evil.example.com/x").is_err());
        assert!(redirected(&from, "http://idp.example.com/c").is_err());
    }
}
