//! Descriptor exhaustion: idle and half-sent connections to the
//! unauthenticated HTTP ports (console, metrics) must not take the
//! descriptors the gRPC port and the database pool need. The binary runs
//! under a descriptor limit of 256, soft and hard, and the test holds more
//! connections than that to each HTTP port while gRPC keeps answering.

use std::time::Duration;

use authzd::pb;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binary::{Server, authzd_with_descriptors};
use crate::dual;
use crate::support::*;

/// Connections held to each HTTP port: more than the process may open.
const HELD: usize = 300;

fn limits_line(server: &Server) -> Value {
    server
        .log_events()
        .into_iter()
        .find(|e| e["fields"]["message"] == "connection limits")
        .unwrap_or_else(|| panic!("no 'connection limits' line:\n{}", server.stderr()))["fields"]
        .clone()
}

/// Opens `n` connections to `addr`; `half` of them send half a request.
async fn hold(addr: &str, n: usize, half: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i < half {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    held
}

async fn still_answers(grpc: &str) {
    // A new connection each time: the gRPC port must still accept.
    let ch = connect(grpc).await;
    let principal = tokio::time::timeout(
        Duration::from_secs(5),
        login_on(&ch, "admin", ADMIN_PASSWORD),
    )
    .await
    .expect("Authenticate did not answer within 5 s")
    .unwrap();
    assert_eq!(principal.username, "admin");
    let mut health = pb_health::health_client::HealthClient::new(ch);
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        health.check(pb_health::HealthCheckRequest::default()),
    )
    .await
    .expect("health did not answer within 5 s")
    .unwrap()
    .into_inner()
    .status();
    assert_eq!(
        status,
        pb_health::health_check_response::ServingStatus::Serving
    );
}

/// Whether the server closed this connection (EOF or reset) by now.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. 408) before the close: read on.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn idle_connections_do_not_take_every_port_down(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start_command(authzd_with_descriptors(256, 256), &db, |c| {
        c.env("AUTHZD_SERVER_METRICS_LISTEN", "127.0.0.1:0")
            .env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0")
            .env("AUTHZD_CONNECTIONS_HEADER_READ_TIMEOUT_SECONDS", "2")
            .env("AUTHZD_CONNECTIONS_HTTP_IDLE_TIMEOUT_SECONDS", "4");
    })
    .await;
    let metrics = server.wait_for_address("metrics listening").await;
    let console = server.wait_for_address("console listening").await;
    let limits = limits_line(&server);
    assert_eq!(limits["descriptors"], 256, "{limits}");
    let cap = |name: &str| limits[name].as_u64().unwrap() as usize;
    // Every cap together leaves the database pool and a reserve.
    assert!(
        cap("grpc") + cap("console") + cap("metrics") + cap("health") + 10 + 65 <= 256,
        "{limits}"
    );
    still_answers(&server.addr).await;

    let mut held = hold(&metrics, HELD, HELD / 6).await;
    held.extend(hold(&console, HELD, HELD / 6).await);
    for _ in 0..3 {
        still_answers(&server.addr).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Half-sent requests are closed at the header deadline, silent
    // connections at the idle timeout; the ports answer again once the
    // accepted ones are gone (the rest were never accepted: they wait in
    // the backlog, and are served in turn).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut closed_count = 0;
    for stream in &mut held {
        if closed(stream).await {
            closed_count += 1;
        }
    }
    assert!(
        closed_count >= cap("metrics") + cap("console"),
        "only {closed_count} connections closed by the server"
    );
    drop(held);
    still_answers(&server.addr).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = crate::ops::http_get(&metrics, "/metrics").await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let open = |listener: &str| {
        crate::ops::sample(
            &text,
            &format!("authzd_open_connections{{listener=\"{listener}\"}}"),
        )
    };
    assert!(open("metrics").is_some_and(|n| n >= 1.0), "{text}");
    assert!(open("grpc").is_some(), "{text}");
    // The console served all along after the flood, too.
    let page = crate::ops::http_get(&console, "/sign-in").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    drop(server);
}

dual!(idle_connections_do_not_take_every_port_down);

/// A soft limit below the hard one is raised to it at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_command(authzd_with_descriptors(256, 4096), &db, |_| {}).await;
    let limits = limits_line(&server);
    assert_eq!(limits["descriptors"], 4096, "{limits}");
    // Half of what is left after the pool (10), its listener and 64.
    assert_eq!(limits["grpc"], (4096 - 75) / 2, "{limits}");
    let ch = connect(&server.addr).await;
    let accounts = AccountServiceClient::new(ch)
        .list_accounts(as_admin(pb::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accounts.accounts[0].name, "admin");
    server.stop();
}
