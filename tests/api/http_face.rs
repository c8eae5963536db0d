//! The HTTP face, served in-process by the library with the gRPC port:
//! its groups each under their own posture, and the layers they share.

use std::time::Duration;

use crate::console::{exchange, header, http, jar, set_cookies, sign_in_body, status};
use crate::support::{Backend, spawn_app, spawn_app_with};

const SAME: &str = "Sec-Fetch-Site: same-origin";

/// The well-known group: public, cacheable, no cookies, any host name; the
/// console group: known host names only, its own CSP. Both under the
/// shared layers (a request id, the default headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_answers_under_its_own_posture() {
    let app = spawn_app(Backend::Sqlite).await;
    let host = app.http.to_string();

    let (head, body) = http(&host, "GET", "/.well-known/jwks.json", &[], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("application/jwk-set+json")
    );
    assert_eq!(header(&head, "cache-control"), Some("public, max-age=300"));
    assert!(set_cookies(&head).is_empty(), "{head}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    assert!(
        header(&head, "x-request-id").is_some_and(|id| id.len() == 36),
        "{head}"
    );
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kid = app.core.tokens().keys().jwks().to_owned();
    assert_eq!(
        jwks,
        serde_json::from_str::<serde_json::Value>(&kid).unwrap()
    );

    // A verifier may reach the keys under any name; the console answers
    // only its own (a rebinding attacker's name gets 421).
    let (head, _) = get_as(&host, "evil.example", "/.well-known/jwks.json").await;
    assert_eq!(status(&head), 200, "{head}");
    let (head, _) = get_as(&host, "evil.example", "/sign-in").await;
    assert_eq!(status(&head), 421, "{head}");

    let (head, _) = http(&host, "GET", "/sign-in", &[], "").await;
    assert_eq!(status(&head), 200, "{head}");
    let csp = header(&head, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("form-action 'self'"), "{head}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    // The console refuses a cross-site POST before reading it.
    let cross = "Sec-Fetch-Site: cross-site";
    let (head, _) = http(&host, "POST", "/sign-in", &[cross], &sign_in_body()).await;
    assert_eq!(status(&head), 403, "{head}");
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    assert_eq!(status(&head), 303, "{head}");
    let session = jar(&set_cookies(&head));
    let (head, body) = http(&host, "GET", "/keys", &[&session], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(body.contains("Signed in as"), "{body}");
}

/// A GET of `path` naming the host `name`.
async fn get_as(addr: &str, name: &str, path: &str) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    exchange(tcp, request).await
}

/// A body larger than any group reads is refused by the shared layer,
/// before the group's handler sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_before_any_group_reads_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Backend::Sqlite).await;
    let mut tcp = tokio::net::TcpStream::connect(app.http).await.unwrap();
    // Only the head is sent: the refusal must not wait for the body.
    let head = format!(
        "POST /sign-in HTTP/1.1\r\nHost: {}\r\n{SAME}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        app.http,
        2 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut raw))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&raw[..n]);
    assert_eq!(status(&text), 413, "{text}");
}

/// A request that outlives `server.request_timeout_ms` is ended by the
/// shared layer with 503, and what it held is let go: here a sign-in
/// waiting on a table another transaction has locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_gets_503_and_lets_go() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.server.request_timeout_ms = 1_000;
        // The database would give up first otherwise.
        c.database.lock_timeout_ms = 30_000;
        c.database.statement_timeout_ms = 30_000;
    })
    .await;
    let host = app.http.to_string();
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE refresh_tokens IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (head, body) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    assert_eq!(status(&head), 503, "{head}");
    assert_eq!(body, "request timed out\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    txn.rollback().await.unwrap();
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    assert_eq!(status(&head), 303, "{head}");
}
