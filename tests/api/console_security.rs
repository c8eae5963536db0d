//! The console's sessions and hosts against an attacker: a replayed
//! refresh token, a bogus renewal meant to stall everyone's, and a page
//! from another host name (DNS rebinding).

use std::time::{Duration, Instant};

use crate::binary::Server;
use crate::console::{exchange, header, http, jar, request, set_cookies, sign_in_body, status};
use crate::support::{Backend, TestDatabase};

const SAME: &str = "Sec-Fetch-Site: same-origin";

async fn console(extra: &[(&'static str, &'static str)]) -> (Server, String, TestDatabase) {
    console_on(Backend::Sqlite, extra).await
}

async fn console_on(
    backend: Backend,
    extra: &[(&'static str, &'static str)],
) -> (Server, String, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let extra = extra.to_vec();
    let server = Server::start_with(&db, move |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0")
            .env(
                "AUTHZD_USER_AUTHENTICATION_OAUTH_DEFAULT_TOKEN_EXPIRATION_SECONDS",
                "10",
            );
        for (k, v) in extra {
            c.env(k, v);
        }
    })
    .await;
    let host = server.wait_for_address("console listening").await;
    (server, host, db)
}

/// The cookie named `name` that a response sets with a value.
fn cookie_set(head: &str, name: &str) -> Option<String> {
    set_cookies(head)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
        .map(str::to_owned)
}

/// The memory of a renewal answers only the browser that made it, and
/// only with an access token: anyone else replaying the used refresh
/// token meets reuse detection, which ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_gets_nothing_from_the_renewal_memory() {
    let (_server, host, _db) = console(&[]).await;
    let browser = "User-Agent: browser-a";
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME, browser], &sign_in_body()).await;
    let session = jar(&set_cookies(&head));
    // The access token lapses (renewal starts 5 s early).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (head, _) = http(&host, "GET", "/keys", &[&session, browser], "").await;
    assert_eq!(status(&head), 200, "{head}");
    let access = cookie_set(&head, "authzd-access").expect("renewed access");
    assert!(cookie_set(&head, "authzd-refresh").is_some(), "{head}");
    let renewed = jar(&set_cookies(&head));

    // The same browser again with the used token (a request that left
    // before the renewal's cookies arrived): the same access token, no
    // refresh token.
    let (head, _) = http(&host, "GET", "/keys", &[&session, browser], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(cookie_set(&head, "authzd-access"), Some(access));
    assert_eq!(cookie_set(&head, "authzd-refresh"), None, "{head}");

    // Another client with the used token: no tokens at all, and the
    // family is revoked, so the renewed session ends too.
    let (head, _) = http(&host, "GET", "/keys", &[&session, "User-Agent: thief"], "").await;
    assert_eq!(header(&head, "location"), Some("/sign-in"), "{head}");
    assert_eq!(cookie_set(&head, "authzd-access"), None, "{head}");
    assert_eq!(cookie_set(&head, "authzd-refresh"), None, "{head}");
    let (head, _) = http(&host, "GET", "/keys", &[&renewed, browser], "").await;
    assert_eq!(header(&head, "location"), Some("/sign-in"), "{head}");
}

/// One HTTP exchange from another loopback address (another source).
async fn http_from(from: &str, host: &str, method: &str, path: &str, headers: &[&str]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(host.parse().unwrap()).await.unwrap();
    exchange(tcp, request(method, host, path, headers, ""))
        .await
        .0
}

/// A source past its rate limit waits out its delay holding no lock that
/// another browser's renewal needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_bogus_renewal_does_not_stall_other_browsers() {
    let (_server, host, _db) = console(&[
        ("AUTHZD_RATE_LIMIT_FAILURES_PER_SECOND", "1"),
        ("AUTHZD_RATE_LIMIT_BURST", "1"),
    ])
    .await;
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    let session = jar(&set_cookies(&head));
    tokio::time::sleep(Duration::from_secs(6)).await;
    // 127.0.0.2 spends its one failure, then sends bogus renewals that
    // are held for the retry delay (1 s).
    let bogus = "Cookie: authzd-refresh=bogus";
    http_from("127.0.0.2", &host, "GET", "/keys", &[bogus]).await;
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(
                async move { http_from("127.0.0.2", &host, "GET", "/keys", &[bogus]).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (head, _) = http(&host, "GET", "/keys", &[&session], "").await;
    let took = started.elapsed();
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        cookie_set(&head, "authzd-refresh").is_some(),
        "renewed: {head}"
    );
    for attacker in attackers {
        let head = attacker.await.unwrap();
        assert_eq!(status(&head), 429, "{head}");
    }
    // Before: the renewal queued behind the four held bogus ones, which
    // held the one lock a second each in turn (3 s and more). The bound
    // leaves a loaded machine's slow write its time.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A renewal stuck in the database (here: its refresh token's row locked
/// by another transaction) holds up only requests presenting that token;
/// another browser's renewal goes through meanwhile. One lock for all
/// exchanges would queue it behind the stuck one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_renewal_holds_up_only_its_own_token() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let (_server, host, db) = console_on(
        Backend::Postgres,
        &[
            ("AUTHZD_DATABASE_LOCK_TIMEOUT_MS", "60000"),
            ("AUTHZD_DATABASE_STATEMENT_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    let stuck = jar(&set_cookies(&head));
    // Every refresh token so far is the stuck session's.
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    let locked = txn
        .execute_unprepared("SELECT token_id FROM refresh_tokens FOR UPDATE")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(locked, 1);
    let (head, _) = http(&host, "POST", "/sign-in", &[SAME], &sign_in_body()).await;
    let other = jar(&set_cookies(&head));
    tokio::time::sleep(Duration::from_secs(6)).await;

    let waiting = {
        let host = host.clone();
        tokio::spawn(async move { http(&host, "GET", "/keys", &[&stuck], "").await.0 })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the stuck renewal is waiting on the row"
    );
    // Well inside the console's request timeout (10 s), which would end
    // the stuck request and free any lock it held.
    let (head, _) = tokio::time::timeout(
        Duration::from_secs(5),
        http(&host, "GET", "/keys", &[&other], ""),
    )
    .await
    .expect("the other browser's renewal is not queued behind the stuck one");
    assert_eq!(status(&head), 200, "{head}");
    assert!(cookie_set(&head, "authzd-refresh").is_some(), "{head}");
    assert!(!waiting.is_finished(), "still waiting on the row");

    txn.rollback().await.unwrap();
    let head = waiting.await.unwrap();
    assert_eq!(status(&head), 200, "{head}");
    assert!(cookie_set(&head, "authzd-refresh").is_some(), "{head}");
}

/// A page from a host name the console is not served under (a DNS-
/// rebinding attacker's name, resolved to 127.0.0.1) gets 421 and no
/// session; the listen address, localhost and configured names work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_another_host_are_refused() {
    let (_server, host, _db) =
        console(&[("AUTHZD_CONSOLE_PUBLIC_HOSTS", "authzd.example.com")]).await;
    let port = host.rsplit_once(':').unwrap().1;
    let with_host = |name: String| {
        let host = host.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
            let text = request("POST", &name, "/sign-in", &[SAME], &sign_in_body());
            exchange(tcp, text).await.0
        }
    };
    for name in [
        format!("rebind.attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("authzd.example.com.attacker.example:{port}"),
        String::new(),
    ] {
        let head = with_host(name.clone()).await;
        assert_eq!(status(&head), 421, "{name}: {head}");
        assert!(set_cookies(&head).is_empty(), "{name}: {head}");
    }
    for name in [
        host.clone(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        "authzd.example.com".to_owned(),
        format!("authzd.example.com:{port}"),
        format!("[::1]:{port}"),
    ] {
        let head = with_host(name.clone()).await;
        assert_eq!(status(&head), 303, "{name}: {head}");
        assert!(
            cookie_set(&head, "authzd-access").is_some(),
            "{name}: {head}"
        );
    }
}
