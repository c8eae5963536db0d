//! authzd's one HTTP client, for what it reads from identity providers
//! (SAML metadata, OIDC discovery documents and JWKS, the token and
//! userinfo endpoints): bounded in size, time and redirects, over HTTPS
//! checked against the web's public roots. What it reads decides whose
//! signatures are accepted, so plain HTTP is taken only from a loopback
//! address, where nobody can sit in the middle.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header;
use http_body_util::{BodyExt, Full, Limited};
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

/// One request: where, what it sends, and which field an error names.
pub struct Call<'a> {
    /// The request field whose address this is, for errors.
    pub field: &'static str,
    pub url: &'a str,
    pub accept: &'static str,
    /// `application/x-www-form-urlencoded`, POSTed; `None`: a GET.
    pub form: Option<String>,
    pub authorization: Option<String>,
    pub max_bytes: usize,
}

/// The document at `url` (SAML metadata), as text.
pub async fn fetch(url: &str) -> Result<String> {
    let call = Call {
        field: FIELD,
        url,
        accept: "application/samlmetadata+xml, application/xml, text/xml",
        form: None,
        authorization: None,
        max_bytes: MAX_METADATA_BYTES,
    };
    let (status, text) = send_call(&call).await?;
    if !(200..300).contains(&status) {
        return Err(Error::invalid(FIELD, format!("answered HTTP {status}")));
    }
    Ok(text)
}

/// The address, if it is one authzd fetches from.
pub fn check_address(url: &str) -> Result<http::Uri> {
    check_address_for(FIELD, url)
}

/// The address, if it is one authzd fetches from; errors name `field`.
pub fn check_address_for(field: &'static str, url: &str) -> Result<http::Uri> {
    let invalid = |reason: &str| Error::invalid(field, reason);
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
            "must be https (plain http only to a loopback address): what is read \
             there decides whose signatures are accepted",
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

/// The status and body `call` was answered with. A GET follows up to
/// three redirects (never from https to http); a POST follows none.
pub async fn send_call(call: &Call<'_>) -> Result<(u16, String)> {
    let field = call.field;
    let invalid = |reason: String| Error::invalid(field, reason);
    let first = check_address_for(field, call.url)?;
    let walk = async {
        let mut uri = first;
        for _ in 0..=MAX_REDIRECTS {
            match exchange(call, &uri).await? {
                Fetched::Document(status, text) => return Ok((status, text)),
                Fetched::Redirect(_) if call.form.is_some() => {
                    return Err(invalid("answered a POST with a redirect".to_owned()));
                }
                Fetched::Redirect(location) => {
                    let next = redirected(field, &uri, &location)?;
                    if uri.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                        return Err(invalid("redirects from https to plain http".to_owned()));
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
    Document(u16, String),
    Redirect(String),
}

/// Where a redirect leads: an absolute address, or a path on the same
/// origin.
fn redirected(field: &'static str, from: &http::Uri, location: &str) -> Result<http::Uri> {
    if location.starts_with('/') && !location.starts_with("//") {
        let (Some(scheme), Some(authority)) = (from.scheme_str(), from.authority()) else {
            return Err(Error::invalid(field, "redirects somewhere unreadable"));
        };
        return check_address_for(field, &format!("{scheme}://{authority}{location}"));
    }
    check_address_for(field, location)
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

async fn exchange(call: &Call<'_>, uri: &http::Uri) -> Result<Fetched> {
    let field = call.field;
    let invalid = |reason: String| Error::invalid(field, reason);
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("is not an absolute http(s) address".to_owned()))?;
    let host = bare_host(authority.host()).to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let unreachable = |e: &dyn std::fmt::Display| invalid(format!("could not be fetched: {e}"));
    // One answer however the connection failed (refused, no route, no
    // such name): the field is no probe of which ports answer where.
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|_| invalid("could not be reached".to_owned()))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http::Request::builder()
        .method(if call.form.is_some() {
            http::Method::POST
        } else {
            http::Method::GET
        })
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "authzd")
        .header(header::ACCEPT, call.accept);
    if call.form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    if let Some(authorization) = &call.authorization {
        request = request.header(header::AUTHORIZATION, authorization.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(
            call.form.clone().unwrap_or_default(),
        )))
        .map_err(|e| unreachable(&e))?;
    let response = if https {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| invalid("names a host TLS cannot verify".to_owned()))?;
        let stream = tls()
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        send(field, stream, request).await?
    } else {
        send(field, tcp, request).await?
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
    let body = Limited::new(response.into_body(), call.max_bytes)
        .collect()
        .await
        .map_err(|_| {
            invalid(format!(
                "is larger than {} KiB, or broke off",
                call.max_bytes / 1024
            ))
        })?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map(|text| Fetched::Document(status.as_u16(), text))
        .map_err(|_| invalid("answered a document that is not UTF-8".to_owned()))
}

async fn send<S>(
    field: &'static str,
    stream: S,
    request: http::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| Error::invalid(field, format!("could not be fetched: {e}"));
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
            redirected(FIELD, &from, "/c").unwrap().to_string(),
            "https://idp.example.com/c"
        );
        assert_eq!(
            redirected(FIELD, &from, "https://other.example.com/d")
                .unwrap()
                .to_string(),
            "https://other.example.com/d"
        );
        // Protocol-relative and plain-http redirects are not followed.
        assert!(redirected(FIELD, &from, "//evil.example.com/x").is_err());
        assert!(redirected(FIELD, &from, "http://idp.example.com/c").is_err());
    }
}
