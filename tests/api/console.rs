//! The web console in a real browser: Debian's chromium, driven over
//! WebDriver by chromedriver, against the release binary on SQLite. The
//! walk follows the seed's flows; screenshots of the main pages go to
//! `target/console-screenshots` (docs/console.md shows them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::binary::Server;
use crate::support::{ADMIN_PASSWORD, Backend, CALLER_KEY, TestDatabase};

const WAIT: Duration = Duration::from_secs(20);

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found; ./scripts/test installs chromium and chromium-driver (or set {env})",
        path.display()
    );
    path
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let bin = tool("AUTHZD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not listen on {port}");
    }

    async fn browser(&self) -> Client {
        let chromium = tool("AUTHZD_TEST_CHROMIUM", "/usr/bin/chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

/// The walk's browser, on one console.
struct Walk {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Walk {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await;
        let field = match found {
            Ok(f) => f,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.path().await,
                self.text().await
            ),
        };
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        let found = self.client.find(Locator::Css(css)).await;
        match found {
            Ok(e) => e.click().await.unwrap(),
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.path().await,
                self.text().await
            ),
        }
    }

    /// Clicks the button or link whose text is `label`.
    async fn press(&self, label: &str) {
        let xpath =
            format!("//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']");
        let found = self.client.find(Locator::XPath(&xpath)).await;
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        match found {
            Ok(e) => e.click().await.unwrap(),
            Err(e) => panic!(
                "no {label:?} on {}: {e}\n{}",
                self.path().await,
                self.text().await
            ),
        }
        self.replaced(old).await;
    }

    /// Waits for the page that `old` belonged to to be replaced (a click
    /// that navigates returns before the next page is there).
    async fn replaced(&self, old: fantoccini::elements::Element) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while old.tag_name().await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page did not change"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("h1"))
            .await
            .unwrap();
    }

    async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, username: &str, password: &str) {
        self.open("/sign-in").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.press("Sign in").await;
    }

    async fn sign_out(&self) {
        self.press("Sign out").await;
        assert_eq!(self.path().await, "/sign-in");
    }

    /// A cookie's value, as the browser holds it (WebDriver sees HttpOnly ones).
    async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// Posts a form the page did not offer, from the page's own origin (as
    /// a hand-crafted request would): `fields` as hidden inputs.
    async fn forge(&self, action: &str, fields: &[(&str, &str)]) {
        let fields: Vec<_> = fields.iter().map(|(k, v)| json!([k, v])).collect();
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .execute(
                "const f = document.createElement('form');
                 f.method = 'post'; f.action = arguments[0];
                 for (const [k, v] of arguments[1]) {
                     const i = document.createElement('input');
                     i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
                 }
                 document.body.appendChild(f); f.submit();",
                vec![json!(action), json!(fields)],
            )
            .await
            .unwrap();
        self.replaced(old).await;
    }

    /// The value on the new-key page.
    async fn key_value(&self) -> String {
        assert_eq!(self.path().await, "/keys/reveal");
        self.client
            .find(Locator::Css("#new-key-value"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    }

    /// This page's CSRF token.
    async fn csrf(&self) -> String {
        self.client
            .find(Locator::Css("input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    }
}

/// grpcurl against the gRPC port: (success, stdout + stderr).
async fn grpcurl(addr: &str, headers: &[String], data: &str, method: &str) -> (bool, String) {
    let bin = std::env::var_os("GRPCURL")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "grpcurl".into());
    let mut command = tokio::process::Command::new(bin);
    command.arg("-plaintext");
    for h in headers {
        command.args(["-H", h]);
    }
    let output = command
        .args(["-d", data, addr, method])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("grpcurl runs (./scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn authenticate(addr: &str, field: &str, value: &str) -> (bool, String) {
    grpcurl(
        addr,
        &[format!("authorization: Bearer {CALLER_KEY}")],
        &json!({ field: value }).to_string(),
        "authz.v1.AuthService/Authenticate",
    )
    .await
}

const ALICE: &str = "alice-console-pw-1";
const BOB: &str = "bob-console-pw-12";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_walks_the_seed_flows_in_chromium() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let console = server.wait_for_address("console listening").await;
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let w = Walk {
        client: driver.browser().await,
        base: format!("http://{console}"),
        shots,
    };
    walk(&w, &server.addr).await;
    w.client.clone().close().await.ok();
}

async fn walk(w: &Walk, grpc: &str) {
    // Signed out, every page leads to sign-in.
    w.open("/accounts").await;
    assert_eq!(w.path().await, "/sign-in");
    w.shot("sign-in").await;

    // A wrong password and an unknown user read the same.
    w.sign_in("admin", "not-the-password").await;
    let wrong = w.text().await;
    assert!(wrong.contains("Invalid username or password."), "{wrong}");
    w.sign_in("nobody-here", "not-the-password").await;
    assert_eq!(w.text().await, wrong);

    // The administrator signs in, creates an account and its users.
    w.sign_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(w.path().await, "/keys");
    w.open("/accounts").await;
    // The admin account's controls are absent.
    w.fill("#account-name", "acme").await;
    w.fill("#account-email", "ops@acme.example").await;
    w.press("Create account").await;
    assert_eq!(w.path().await, "/accounts/acme");
    assert!(w.text().await.contains("Let's add one!"));
    // A field error is shown next to its field, with the RPC's field name.
    w.fill("#new-username", "bad name!").await;
    w.fill("#new-password", ALICE).await;
    w.press("Add user").await;
    assert!(w.has("#username-error").await, "{}", w.text().await);
    w.fill("#new-username", "alice").await;
    w.fill("#new-password", ALICE).await;
    w.click("#role-read-write").await;
    w.press("Add user").await;
    assert_eq!(w.path().await, "/accounts/acme/users/alice");
    assert!(w.text().await.contains("read-write"));
    w.open("/accounts/acme").await;
    w.fill("#new-username", "bob").await;
    w.fill("#new-password", BOB).await;
    w.click("#role-account-user-admin").await;
    w.press("Add user").await;
    w.open("/accounts/acme").await;
    let page = w.text().await;
    assert!(page.contains("alice") && page.contains("bob"), "{page}");
    w.shot("account").await;
    w.open("/accounts").await;
    w.shot("accounts").await;
    w.open("/accounts/admin").await;
    assert!(
        !w.has("a.danger").await,
        "the admin account has no delete control"
    );
    assert!(
        !w.text().await.contains("Disable account"),
        "the admin account cannot be disabled here"
    );
    w.sign_out().await;

    // Alice creates a key, reads it once, uses it.
    w.sign_in("alice", ALICE).await;
    assert_eq!(w.path().await, "/keys");
    w.fill("#key-name", "ci").await;
    w.fill("#key-description", "the build").await;
    w.press("Create").await;
    assert_eq!(w.path().await, "/keys/reveal");
    let value = w
        .client
        .find(Locator::Css("#new-key-value"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    assert!(w.text().await.contains("shown only once"));
    w.shot("new-key").await;
    w.client.refresh().await.unwrap();
    assert!(
        !w.source().await.contains(&value),
        "a reload shows the key again"
    );
    assert!(w.text().await.contains("cannot be shown again"));
    let (ok, out) = authenticate(grpc, "api_key", &value).await;
    assert!(
        ok && out.contains("alice"),
        "the new key authenticates: {out}"
    );

    // Alice may not manage users: no controls, and a forged POST is refused.
    w.open("/accounts/acme").await;
    assert!(!w.has("#new-username").await, "alice sees no add-user form");
    let token = w.csrf().await;
    w.forge(
        "/accounts/acme/users",
        &[
            ("csrf", &token),
            ("username", "mallory"),
            ("password", "mallory-pw-123"),
        ],
    )
    .await;
    assert!(
        w.text().await.contains("Permission denied."),
        "{}",
        w.text().await
    );
    // A form without this session's token changes nothing.
    w.open("/keys").await;
    w.forge("/keys", &[("name", "sneaky"), ("expires", "2099-01-01")])
        .await;
    assert!(
        w.text().await.contains("Form refused"),
        "{}",
        w.text().await
    );
    w.open("/keys").await;
    assert!(!w.text().await.contains("sneaky"));

    // Revoke with confirmation: refused, listed as revoked, hidden by the toggle.
    w.press("Revoke ci").await;
    assert_eq!(w.path().await, "/keys/revoke");
    w.press("Revoke key").await;
    let (ok, out) = authenticate(grpc, "api_key", &value).await;
    assert!(
        !ok && out.contains("Unauthenticated"),
        "a revoked key: {out}"
    );
    let listed = w.text().await;
    assert!(listed.contains("revoked"), "{listed}");
    w.shot("keys").await;
    w.click("#only-active").await;
    w.press("Apply").await;
    assert!(!w.text().await.contains("the build"), "only active keys");

    // Sign-out revokes the session's tokens, not just the cookie.
    let access = w.cookie("authzd-access").await.expect("an access cookie");
    let (ok, _) = authenticate(grpc, "token", &access).await;
    assert!(ok, "the session's access token works while signed in");
    w.sign_out().await;
    let (ok, out) = authenticate(grpc, "token", &access).await;
    assert!(!ok, "signed out, the access token is revoked: {out}");
    w.open("/keys").await;
    assert_eq!(w.path().await, "/sign-in");

    // Bob, the account's user administrator, manages alice's keys.
    w.sign_in("bob", BOB).await;
    w.open("/keys?account=acme&user=alice").await;
    assert!(w.text().await.contains("API keys of alice"));
    w.fill("#key-name", "deploy").await;
    w.press("Create").await;
    assert_eq!(w.path().await, "/keys/reveal");
    let deploy = w.key_value().await;
    let (ok, out) = authenticate(grpc, "api_key", &deploy).await;
    assert!(
        ok && out.contains("alice"),
        "bob's key for alice is alice's: {out}"
    );
    w.press("Done").await;
    // Rotation: a new value, shown once; the old one works for the grace hour.
    w.press("Rotate deploy").await;
    w.press("Rotate key").await;
    assert_eq!(w.path().await, "/keys/reveal");
    let rotated = w.key_value().await;
    assert_ne!(rotated, deploy);
    for value in [&rotated, &deploy] {
        let (ok, out) = authenticate(grpc, "api_key", value).await;
        assert!(ok && out.contains("alice"), "after rotation: {out}");
    }
    w.press("Done").await;
    w.press("Revoke deploy").await;
    w.press("Revoke key").await;
    for value in [&rotated, &deploy] {
        let (ok, _) = authenticate(grpc, "api_key", value).await;
        assert!(!ok, "bob revoked alice's key");
    }
    // An API key cannot sign in to the console, though gRPC takes it as
    // Anchore's `_api_key` basic credential.
    w.fill("#key-name", "spare").await;
    w.press("Create").await;
    let spare = w.key_value().await;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("_api_key:{spare}"),
    );
    let (ok, out) = authenticate(grpc, "authorization", &format!("Basic {basic}")).await;
    assert!(ok && out.contains("alice"), "{out}");
    w.press("Done").await;
    w.sign_out().await;
    w.sign_in("_api_key", &spare).await;
    assert_eq!(w.path().await, "/sign-in");
    assert!(w.text().await.contains("Invalid username or password."));

    // The administrator, by keyboard alone, disables, then deletes the
    // account; groups too.
    w.open("/sign-in").await;
    let field = w.client.find(Locator::Css("#username")).await.unwrap();
    let (tab, enter) = (char::from(Key::Tab), char::from(Key::Enter));
    let old = w.client.find(Locator::Css("html")).await.unwrap();
    field
        .send_keys(&format!("admin{tab}{ADMIN_PASSWORD}{enter}"))
        .await
        .unwrap();
    w.replaced(old).await;
    assert_eq!(w.path().await, "/keys", "{}", w.text().await);
    w.open("/groups").await;
    w.fill("#group-name", "auditors").await;
    w.press("Create group").await;
    assert_eq!(w.path().await, "/groups/auditors");
    w.fill("#member-username", "alice").await;
    w.press("Add member").await;
    assert!(w.text().await.contains("Remove alice"));
    w.shot("group").await;
    // The account context: Users and the key-owner picker follow it.
    w.open("/keys").await;
    w.client
        .find(Locator::Css("#context-account"))
        .await
        .unwrap()
        .select_by_value("acme")
        .await
        .unwrap();
    w.press("Switch").await;
    assert_eq!(w.path().await, "/accounts/acme");
    w.open("/keys").await;
    let owners = w
        .client
        .find(Locator::Css("#key-owner"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        owners.contains("alice") && owners.contains("bob"),
        "{owners}"
    );

    // Users: email, roles, state, password, delete.
    w.open("/accounts/acme").await;
    w.fill("#edit-email", "security@acme.example").await;
    w.press("Save email").await;
    assert!(w.text().await.contains("security@acme.example"));
    w.open("/accounts/acme/users/alice").await;
    w.client
        .find(Locator::Css("#add-role"))
        .await
        .unwrap()
        .select_by_value("read-only")
        .await
        .unwrap();
    w.press("Add role").await;
    assert!(
        w.has("form[action$='/roles/remove'] input[value=read-only]")
            .await
    );
    w.press("Remove role read-only").await;
    assert!(
        !w.has("form[action$='/roles/remove'] input[value=read-only]")
            .await
    );
    w.press("Disable user").await;
    let alice = json!({ "password": { "username": "alice", "password": ALICE } }).to_string();
    let key_header = [format!("authorization: Bearer {CALLER_KEY}")];
    let (ok, _) = grpcurl(
        grpc,
        &key_header,
        &alice,
        "authz.v1.AuthService/Authenticate",
    )
    .await;
    assert!(!ok, "a disabled user is refused");
    w.press("Enable user").await;
    let (ok, out) = grpcurl(
        grpc,
        &key_header,
        &alice,
        "authz.v1.AuthService/Authenticate",
    )
    .await;
    assert!(ok, "enabled again: {out}");
    w.open("/accounts/acme/users/bob").await;
    w.fill("#set-password", "short").await;
    w.press("Set password").await;
    assert!(w.has("#password-error").await, "{}", w.text().await);
    w.fill("#set-password", "bob-new-password-1").await;
    w.press("Set password").await;
    let bob =
        json!({ "password": { "username": "bob", "password": "bob-new-password-1" } }).to_string();
    let (ok, out) = grpcurl(grpc, &key_header, &bob, "authz.v1.AuthService/Authenticate").await;
    assert!(ok, "bob's new password: {out}");
    w.press("Delete user").await;
    w.press("Delete user").await;
    assert_eq!(w.path().await, "/accounts/acme");
    assert!(!w.text().await.contains("bob"));

    w.open("/accounts/acme").await;
    w.press("Disable account").await;
    assert!(w.text().await.contains("disabled"));
    w.press("Delete account").await;
    w.press("Delete account").await;
    assert_eq!(w.path().await, "/accounts");
    let (ok, out) = grpcurl(
        grpc,
        &[format!("authorization: Bearer {CALLER_KEY}")],
        &json!({ "password": { "username": "alice", "password": ALICE } }).to_string(),
        "authz.v1.AuthService/Authenticate",
    )
    .await;
    assert!(!ok, "alice's account is gone: {out}");
    w.sign_out().await;
}

/// One HTTP/1.1 exchange over `io`: (status line and headers, body).
pub async fn exchange<IO>(mut io: IO, request: String) -> (String, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // The server closes after `Connection: close`; a TLS peer that skips
    // close_notify reads as an error after the whole response.
    let _ = tokio::time::timeout(WAIT, io.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

pub fn request(method: &str, host: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if method == "POST" {
        text.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

pub async fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    exchange(tcp, request(method, host, path, headers, body)).await
}

/// A form posted from the console's own page, with the session's cookies.
pub async fn post(host: &str, path: &str, cookies: &str, body: &str) -> (String, String) {
    http(
        host,
        "POST",
        path,
        &[cookies, "Sec-Fetch-Site: same-origin"],
        body,
    )
    .await
}

pub fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The value of a response header (the first), by case-insensitive name.
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every Set-Cookie line.
pub fn set_cookies(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A `Cookie:` header carrying the `name=value` of the cookies set.
pub fn jar(cookies: &[&str]) -> String {
    let pairs: Vec<&str> = cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .filter(|p| !p.ends_with('='))
        .collect();
    format!("Cookie: {}", pairs.join("; "))
}

pub fn sign_in_body() -> String {
    format!("username=admin&password={ADMIN_PASSWORD}")
}

pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_cookies_headers_and_cross_site_posts() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let host = server.wait_for_address("console listening").await;
    let same = "Sec-Fetch-Site: same-origin";

    // A sign-in posted from another site is refused before any password check.
    for foreign in ["Sec-Fetch-Site: cross-site", "Origin: http://evil.example"] {
        let (head, _) = http(&host, "POST", "/sign-in", &[foreign], &sign_in_body()).await;
        assert_eq!(status(&head), 403, "{foreign}: {head}");
        assert!(set_cookies(&head).is_empty());
    }

    let (head, _) = http(&host, "POST", "/sign-in", &[same], &sign_in_body()).await;
    assert_eq!(status(&head), 303, "{head}");
    let cookies = set_cookies(&head);
    for name in ["authzd-access=", "authzd-refresh="] {
        let cookie = cookies.iter().find(|c| c.starts_with(name)).expect(name);
        let flags = cookie.to_ascii_lowercase();
        assert!(
            flags.contains("; httponly")
                && flags.contains("; samesite=strict")
                && flags.contains("; path=/"),
            "{cookie}"
        );
        assert!(
            !flags.contains("; secure"),
            "no Secure without TLS: {cookie}"
        );
    }
    let session = jar(&cookies);

    // Every page: the CSP, no caching, no framing.
    let (head, page) = http(&host, "GET", "/keys", &[session.as_str()], "").await;
    assert_eq!(status(&head), 200, "{head}");
    let csp = header(&head, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert_eq!(header(&head, "x-frame-options"), Some("DENY"));
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "no inline script or style"
    );
    let token = csrf_of(&page);

    // The token of another session does not pass for this one's.
    let (other, _) = http(&host, "POST", "/sign-in", &[same], &sign_in_body()).await;
    let other = jar(&set_cookies(&other));
    let (_, other_page) = http(&host, "GET", "/keys", &[other.as_str()], "").await;
    let other_token = csrf_of(&other_page);
    assert_ne!(token, other_token, "sessions have their own form tokens");
    // The date the page offers by default, within the allowed range.
    let at = page.find("id=\"key-expires\"").expect("an expiry field");
    let at = at + page[at..].find(" value=\"").expect("a default expiry") + 8;
    let expires = page[at..].split('"').next().unwrap().to_owned();
    let form = |t: &str| {
        format!("csrf={t}&account=admin&user=admin&name=k1&description=&expires={expires}")
    };
    let (head, _) = post(&host, "/keys", &session, &form(&other_token)).await;
    assert_eq!(status(&head), 403, "another session's token: {head}");

    // With its own token, a key is made; its page is shown once, uncached.
    let (head, _) = post(&host, "/keys", &session, &form(&token)).await;
    assert_eq!(status(&head), 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/keys/reveal"));
    let reveal = set_cookies(&head);
    let with_key = format!("{session}; {}", jar(&reveal).trim_start_matches("Cookie: "));
    let (head, page) = http(&host, "GET", "/keys/reveal", &[with_key.as_str()], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert!(page.contains("shown only once"));
    assert!(
        set_cookies(&head)
            .iter()
            .any(|c| c.starts_with("authzd-new-key=;") && c.contains("Max-Age=0"))
    );
    let (head, page) = http(&host, "GET", "/keys/reveal", &[session.as_str()], "").await;
    assert_eq!(status(&head), 410, "{head}");

    // The audit trail records the console's change like an RPC's.
    let channel = crate::support::connect(&server.addr).await;
    let events = authzd::pb::audit_service_client::AuditServiceClient::new(channel)
        .list_events(crate::support::as_admin(authzd::pb::ListEventsRequest {
            target_kind: "api_key".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (
            event.rpc.as_str(),
            event.actor.as_str(),
            event.target.as_str()
        ),
        ("console:CreateApiKey", "admin", "k1")
    );
    assert!(page.contains("cannot be shown again"));

    // Signing one session out ends that session only.
    let (head, _) = post(&host, "/sign-out", &other, &format!("csrf={other_token}")).await;
    assert_eq!(status(&head), 303);
    assert_eq!(header(&head, "location"), Some("/sign-in"));
    let (head, _) = http(&host, "GET", "/keys", &[other.as_str()], "").await;
    assert_eq!(
        header(&head, "location"),
        Some("/sign-in"),
        "signed out: {head}"
    );
    let (head, _) = http(&host, "GET", "/keys", &[session.as_str()], "").await;
    assert_eq!(status(&head), 200, "the other session goes on: {head}");

    // The account context, for an account whose name holds `;` and a space.
    let (head, _) = post(
        &host,
        "/accounts",
        &session,
        &format!("csrf={token}&name=team+one%3Bx&email="),
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    let (head, _) = post(
        &host,
        "/context",
        &session,
        &format!("csrf={token}&account=team+one%3Bx"),
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    let context = set_cookies(&head);
    let with_context = format!(
        "{session}; {}",
        jar(&context).trim_start_matches("Cookie: ")
    );
    let (head, page) = http(&host, "GET", "/keys", &[with_context.as_str()], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        page.contains(r#"<option value="team one;x" selected>"#),
        "the context survives its cookie: {page}"
    );
    // The RPCs' input rules: a key name with a right-to-left override is
    // refused, next to its field; so is a group grant of an unknown role.
    let (head, page) = post(
        &host,
        "/keys",
        &session,
        &format!("csrf={token}&account=admin&user=admin&name=abc%E2%80%AEcba&expires={expires}"),
    )
    .await;
    assert_eq!(status(&head), 400, "{head}");
    assert!(page.contains("bidirectional"), "{page}");
    let (head, body) = post(
        &host,
        "/groups",
        &session,
        &format!("csrf={token}&name=grp1&description="),
    )
    .await;
    assert_eq!(status(&head), 303, "{head}{body}");
    let (head, page) = post(
        &host,
        "/groups/grp1/grants",
        &session,
        &format!("csrf={token}&role=no-such-role&grants%5B0%5D.account=admin"),
    )
    .await;
    assert_eq!(status(&head), 400, "{head}");
    assert!(page.contains(r#"id="grants[0].role-error""#), "{page}");
    // A control character in the address is refused before any lookup.
    let (head, _) = http(&host, "GET", "/accounts/%00x", &[session.as_str()], "").await;
    assert_eq!(status(&head), 400, "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_renew_once_under_concurrent_requests() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0")
            .env(
                "AUTHZD_USER_AUTHENTICATION_OAUTH_DEFAULT_TOKEN_EXPIRATION_SECONDS",
                "10",
            );
    })
    .await;
    let host = server.wait_for_address("console listening").await;
    let same = "Sec-Fetch-Site: same-origin";
    let (head, _) = http(&host, "POST", "/sign-in", &[same], &sign_in_body()).await;
    let session = jar(&set_cookies(&head));
    let (head, page) = http(&host, "GET", "/keys", &[session.as_str()], "").await;
    assert_eq!(status(&head), 200);
    assert!(
        set_cookies(&head).is_empty(),
        "a fresh token is not renewed"
    );
    let token = csrf_of(&page);

    // The access token lapses (renewal starts 5 s early); two requests
    // arrive at once with the same cookies.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cookies = [session.as_str()];
    let (first, second) = tokio::join!(
        http(&host, "GET", "/keys", &cookies, ""),
        http(&host, "GET", "/keys", &cookies, ""),
    );
    for (head, _) in [&first, &second] {
        assert_eq!(status(head), 200, "renewed, not signed out: {head}");
    }
    // One exchange: both got its access token, and only the request that
    // made it got the new refresh token (the other was answered from the
    // memory, which never hands out a refresh token).
    let refreshes = |head: &str| {
        set_cookies(head)
            .into_iter()
            .filter(|c| c.starts_with("authzd-refresh="))
            .count()
    };
    assert_eq!(
        refreshes(&first.0) + refreshes(&second.0),
        1,
        "{first:?} {second:?}"
    );
    let access = |head: &str| {
        set_cookies(head)
            .into_iter()
            .find(|c| c.starts_with("authzd-access="))
            .map(str::to_owned)
    };
    assert!(access(&first.0).is_some());
    assert_eq!(
        access(&first.0),
        access(&second.0),
        "one renewed access token"
    );
    let exchanged = if refreshes(&first.0) == 1 {
        &first.0
    } else {
        &second.0
    };
    let renewed = jar(&set_cookies(exchanged));
    assert_ne!(renewed, session);
    // The family was not taken for stolen: the renewed pair works, and the
    // form token is the session's still.
    let (head, page) = http(&host, "GET", "/keys", &[renewed.as_str()], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(csrf_of(&page), token);
    // Sign-out clears the cookies and revokes the renewed pair.
    let (head, _) = post(&host, "/sign-out", &renewed, &format!("csrf={token}")).await;
    assert_eq!(header(&head, "location"), Some("/sign-in"));
    assert!(
        set_cookies(&head).iter().all(|c| c.contains("Max-Age=0")),
        "sign-out only clears: {head}"
    );
    let (head, _) = http(&host, "GET", "/keys", &[renewed.as_str()], "").await;
    assert_eq!(header(&head, "location"), Some("/sign-in"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_over_tls_uses_secure_host_cookies() {
    use rustls::pki_types::pem::PemObject;

    use crate::ops::Pki;
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost");
    let cert_file = pki.write("server.pem", &cert);
    let key_file = pki.write("server.key", &key);
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0")
            .env("AUTHZD_TLS_CERT_FILE", &cert_file)
            .env("AUTHZD_TLS_KEY_FILE", &key_file);
    })
    .await;
    let host = server.wait_for_address("console listening").await;

    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca.pem().as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("the console speaks TLS");
    let (head, _) = exchange(
        tls,
        request(
            "POST",
            &host,
            "/sign-in",
            &["Sec-Fetch-Site: same-origin"],
            &sign_in_body(),
        ),
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    let cookies = set_cookies(&head);
    for name in ["__Host-authzd-access=", "__Host-authzd-refresh="] {
        let cookie = cookies
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {head}"));
        assert!(
            cookie.contains("; Secure") && cookie.contains("; HttpOnly"),
            "{cookie}"
        );
    }
    // The browser's cookies come back under their `__Host-` names.
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (head, page) = exchange(
        tls,
        request("GET", &host, "/keys", &[jar(&cookies).as_str()], ""),
    )
    .await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(page.contains("Signed in as"));
    // A renewed certificate (a new CA) is served after SIGHUP, as on the
    // gRPC port.
    let renewed = Pki::new();
    let (cert, key) = renewed.issue("localhost");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    server.signal("HUP");
    server
        .wait_for_logged("console: reloaded TLS material", 1)
        .await;
    let trusting = |ca: &Pki| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca.pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    };
    let handshake = |connector: tokio_rustls::TlsConnector| {
        let host = host.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.is_ok()
        }
    };
    assert!(
        handshake(trusting(&renewed)).await,
        "the renewed certificate"
    );
    assert!(
        !handshake(trusting(&pki)).await,
        "the old certificate is gone"
    );

    // Plain HTTP on the TLS port gets no HTTP answer (a TLS alert at most).
    let (head, _) = http(&host, "GET", "/sign-in", &[], "").await;
    assert!(
        !head.starts_with("HTTP/"),
        "an HTTP answer in plain text: {head}"
    );
}
