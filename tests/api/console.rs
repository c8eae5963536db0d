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
        self.browser_sized(1280, 900).await
    }

    async fn browser_sized(&self, width: u32, height: u32) -> Client {
        let chromium = tool("AUTHZD_TEST_CHROMIUM", "/usr/bin/chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            }),
        );
        // Headless chromium keeps windows at least 500 px wide: a phone's
        // viewport needs device emulation.
        if width < 500
            && let Some(options) = caps.get_mut("goog:chromeOptions")
        {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 3.0 } });
        }
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

/// grpcurl's report of the one refusal a login gets, whatever failed: not
/// a transport error or a fail-closed UNAVAILABLE.
fn refused_login(ok: bool, out: &str) -> bool {
    !ok && out.contains("Code: Unauthenticated") && out.contains("Message: invalid credentials")
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
    assert!(refused_login(ok, &out), "a revoked key: {out}");
    // The seed's default hides it; the toggle (a link) reveals it.
    assert!(
        !w.text().await.contains("the build"),
        "only active keys by default"
    );
    w.press("Show all keys (revoked and expired too)").await;
    let listed = w.text().await;
    assert!(
        listed.contains("revoked") && listed.contains("the build"),
        "{listed}"
    );
    w.shot("keys").await;
    w.press("Show only active").await;
    assert!(!w.text().await.contains("the build"), "only active keys");

    // Sign-out revokes the session's tokens, not just the cookie.
    let access = w.cookie("authzd-access").await.expect("an access cookie");
    let (ok, _) = authenticate(grpc, "token", &access).await;
    assert!(ok, "the session's access token works while signed in");
    w.sign_out().await;
    let (ok, out) = authenticate(grpc, "token", &access).await;
    assert!(
        refused_login(ok, &out),
        "signed out, the access token is revoked: {out}"
    );
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
        let (ok, out) = authenticate(grpc, "api_key", value).await;
        assert!(refused_login(ok, &out), "bob revoked alice's key: {out}");
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
    w.fill("#context-account", "acme").await;
    w.press("Switch").await;
    assert_eq!(w.path().await, "/accounts/acme");
    w.open("/keys").await;
    w.fill("#key-owner", "alice").await;
    w.press("Show").await;
    assert!(
        w.text().await.contains("API keys of alice"),
        "{}",
        w.text().await
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
    let (ok, out) = grpcurl(
        grpc,
        &key_header,
        &alice,
        "authz.v1.AuthService/Authenticate",
    )
    .await;
    assert!(refused_login(ok, &out), "a disabled user is refused: {out}");
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
    assert!(refused_login(ok, &out), "alice's account is gone: {out}");
    w.sign_out().await;
}

/// Named checks that do not stop the walk: every failing one is reported
/// at the end, so one run shows each point's test failing on its own.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            eprintln!("check {name} FAILED: {detail}");
            self.0.push(name.to_owned());
        }
    }

    fn finish(self) {
        assert!(self.0.is_empty(), "failed checks: {:?}", self.0);
    }
}

impl Walk {
    /// `press` that reports instead of panicking.
    async fn try_press(&self, label: &str) -> bool {
        let xpath =
            format!("//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']");
        let Ok(found) = self.client.find(Locator::XPath(&xpath)).await else {
            return false;
        };
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        found.click().await.unwrap();
        self.replaced(old).await;
        true
    }

    /// Clicks the element `css` and waits for the next page.
    async fn try_follow(&self, css: &str) -> bool {
        let Ok(found) = self.client.find(Locator::Css(css)).await else {
            return false;
        };
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        found.click().await.unwrap();
        self.replaced(old).await;
        true
    }

    async fn try_fill(&self, css: &str, value: &str) -> bool {
        let Ok(field) = self.client.find(Locator::Css(css)).await else {
            return false;
        };
        field.clear().await.is_ok() && field.send_keys(value).await.is_ok()
    }

    /// The text of the first `css`, if there is one.
    async fn text_of(&self, css: &str) -> Option<String> {
        let found = self.client.find(Locator::Css(css)).await.ok()?;
        found.text().await.ok()
    }

    async fn attr_of(&self, css: &str, name: &str) -> Option<String> {
        let found = self.client.find(Locator::Css(css)).await.ok()?;
        found.attr(name).await.ok()?
    }

    /// The texts of the first cells of the table's rows.
    async fn first_cells(&self) -> Vec<String> {
        let cells = self
            .client
            .find_all(Locator::Css("tbody tr > :first-child"))
            .await
            .unwrap_or_default();
        let mut texts = Vec::new();
        for cell in cells {
            texts.push(cell.text().await.unwrap_or_default());
        }
        texts
    }

    /// (document scroll width, viewport width).
    async fn widths(&self) -> (u64, u64) {
        let value = self
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let at = |i: usize| value.get(i).and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
        (at(0), at(1))
    }
}

/// The administrator's fixtures, through the gRPC API: more accounts and
/// users than a page holds (and than the old capped selectors held).
async fn crowd(grpc: &str) {
    use crate::support::as_admin;
    use authzd::pb;
    let channel = crate::support::connect(grpc).await;
    let accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let users = pb::user_service_client::UserServiceClient::new(channel.clone());
    let groups = pb::group_service_client::GroupServiceClient::new(channel);
    for (name, email) in [("acme", "ops@acme.example"), ("quiet", ""), ("crowd", "")] {
        accounts
            .clone()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: name.into(),
                email: email.into(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    for (name, password, role) in [
        ("alice", ALICE, "read-write"),
        ("bob", BOB, "account-user-admin"),
    ] {
        users
            .clone()
            .create_user(as_admin(pb::CreateUserRequest {
                account: "acme".into(),
                username: name.into(),
                password: password.into(),
                roles: vec![role.into()],
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    // Eight at a time: quick, without flooding the server.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (mut accounts, mut users) = (accounts.clone(), users.clone());
        workers.spawn(async move {
            for i in (worker..205).step_by(8) {
                accounts
                    .create_account(as_admin(pb::CreateAccountRequest {
                        name: format!("bulk-{i:03}"),
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
            }
            // SAML users: no password to hash, so 505 of them are quick.
            for i in (worker..505).step_by(8) {
                users
                    .create_user(as_admin(pb::CreateUserRequest {
                        account: "crowd".into(),
                        username: format!("member-{i:03}"),
                        r#type: pb::UserType::Saml.into(),
                        idp_name: "corp".into(),
                        roles: vec!["read-only".into()],
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let mut groups = groups;
    groups
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "auditors".into(),
            description: "read the audit".into(),
        }))
        .await
        .unwrap();
    groups
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "auditors".into(),
            usernames: vec!["alice".into()],
        }))
        .await
        .unwrap();
    groups
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "auditors".into(),
            grants: vec![pb::GroupGrant {
                role: "read-only".into(),
                account: "acme".into(),
            }],
        }))
        .await
        .unwrap();
}

/// Issue 24: the seed's roles view, and the console at real sizes and on
/// a phone. Each check is named; a run reports every failing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_roles_lists_at_scale_and_on_a_phone_in_chromium() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let console = server.wait_for_address("console listening").await;
    crowd(&server.addr).await;
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut c = Checks::default();
    let w = Walk {
        client: driver.browser().await,
        base: format!("http://{console}"),
        shots: shots.clone(),
    };
    roles_and_lists(&w, &mut c).await;
    // The key the phone lists, made here: the phone part only reads pages,
    // so a layout that hides a button fails its checks, not a click.
    w.sign_in("admin", ADMIN_PASSWORD).await;
    w.open("/keys").await;
    w.fill("#key-name", "a-rather-long-key-name-for-a-phone")
        .await;
    w.fill("#key-description", "listed on a 390 px screen")
        .await;
    w.press("Create").await;
    w.press("Done").await;
    w.sign_out().await;
    w.client.clone().close().await.ok();
    let phone = Walk {
        client: driver.browser_sized(390, 844).await,
        base: format!("http://{console}"),
        shots,
    };
    on_a_phone(&phone, &mut c).await;
    phone.client.clone().close().await.ok();
    c.finish();
}

async fn roles_and_lists(w: &Walk, c: &mut Checks) {
    w.sign_in("admin", ADMIN_PASSWORD).await;

    // §2 The seed's roles tab: each role with its permissions; View lists
    // the account's members of the role.
    w.open("/accounts/acme").await;
    let tab = w.try_follow("#roles-tab").await;
    let page = w.text().await;
    c.check(
        "roles-tab",
        tab && w.path().await == "/accounts/acme/roles"
            && page.contains("read-write")
            && page.contains("createApplication")
            && page.contains("account-user-admin"),
        &page,
    );
    w.shot("roles").await;
    let view = w.try_follow("#role-read-write a").await;
    let page = w.text().await;
    c.check(
        "role-view-members",
        view && w.path().await == "/accounts/acme/roles/read-write"
            && page.contains("alice")
            && !page.contains("bob"),
        &page,
    );
    w.shot("role-members").await;
    // More members than a page: a count, Next, Previous, a search.
    w.open("/accounts/crowd/roles/read-only").await;
    let count = w.text_of("#members-count").await.unwrap_or_default();
    c.check(
        "role-members-count",
        count.starts_with("505 members"),
        &count,
    );
    let next = w.try_follow("#members-next").await;
    let second = w.first_cells().await;
    c.check(
        "role-members-next",
        next && second.first().map(String::as_str) == Some("member-100"),
        format!("{second:?}"),
    );
    let previous = w.try_follow("#members-prev").await;
    let first = w.first_cells().await;
    c.check(
        "role-members-previous",
        previous
            && first.first().map(String::as_str) == Some("member-000")
            && first.len() == 100
            && !w.has("#members-prev").await,
        format!("{first:?}"),
    );
    let searched = w.try_fill("#members-q", "member-50").await && w.try_press("Search").await;
    let count = w.text_of("#members-count").await.unwrap_or_default();
    c.check(
        "role-members-search",
        searched && count.starts_with("5 members") && w.first_cells().await.len() == 5,
        &count,
    );

    // Lists: accounts and an account's users, by prefix, both ways.
    w.open("/accounts").await;
    let count = w.text_of("#accounts-count").await.unwrap_or_default();
    c.check("accounts-count", count.starts_with("209 accounts"), &count);
    let next = w.try_follow("#accounts-next").await;
    let back = w.try_follow("#accounts-prev").await;
    let first = w.first_cells().await;
    c.check(
        "accounts-next-previous",
        next && back && first.first().map(String::as_str) == Some("acme"),
        format!("{first:?}"),
    );
    let searched = w.try_fill("#accounts-q", "bulk-20").await && w.try_press("Search").await;
    let found = w.first_cells().await;
    c.check(
        "accounts-search",
        searched && found == ["bulk-200", "bulk-201", "bulk-202", "bulk-203", "bulk-204"],
        format!("{found:?}"),
    );
    w.open("/accounts/crowd").await;
    let count = w.text_of("#users-count").await.unwrap_or_default();
    let next = w.try_follow("#users-next").await;
    let second = w.first_cells().await;
    c.check(
        "users-count-next",
        count.starts_with("505 users")
            && next
            && second.first().map(String::as_str) == Some("member-100"),
        format!("{count} {second:?}"),
    );
    let searched = w.try_fill("#users-q", "member-50").await && w.try_press("Search").await;
    c.check(
        "users-search",
        searched && w.first_cells().await.len() == 5,
        w.text().await,
    );

    // The account context is typed, then looked up: no list to cap.
    let switched = w.try_fill("#context-account", "bulk-204").await && w.try_press("Switch").await;
    c.check(
        "context-beyond-cap",
        switched && w.path().await == "/accounts/bulk-204",
        w.path().await,
    );
    c.check(
        "notice-context",
        w.text_of("#notice").await.as_deref() == Some("Account context switched."),
        w.text().await,
    );
    // A name that is no account: the accounts starting with it, and a
    // banner naming the field.
    let switched = w.try_fill("#context-account", "bulk-2").await && w.try_press("Switch").await;
    let banner = w.text_of("#problem").await.unwrap_or_default();
    c.check(
        "context-search-page",
        switched && banner.contains("Account") && w.first_cells().await.len() == 5,
        &banner,
    );
    // The key owner is typed too: the 505th user of the context account
    // (switched by a plain form post, so this check stands on its own).
    w.open("/keys").await;
    let token = w.csrf().await;
    w.forge("/context", &[("csrf", &token), ("account", "crowd")])
        .await;
    w.open("/keys").await;
    let shown = w.try_fill("#key-owner", "member-504").await && w.try_press("Show").await;
    let page = w.text().await;
    c.check(
        "key-owner-beyond-cap",
        shown && page.contains("Keys of user member-504 in account crowd"),
        &page,
    );

    // Groups: true counts, and a search.
    w.open("/groups").await;
    let members = w.text_of("tr td.members").await.unwrap_or_default();
    let grants = w.text_of("tr td.grants").await.unwrap_or_default();
    c.check(
        "group-counts",
        members == "1" && grants == "1",
        format!("members {members}, roles {grants}"),
    );
    let count = w.text_of("#groups-count").await.unwrap_or_default();
    let searched = w.try_fill("#groups-q", "zzz").await && w.try_press("Search").await;
    let none = w.text_of("#groups-count").await.unwrap_or_default();
    c.check(
        "groups-count-search",
        count.trim() == "1 group" && searched && none.starts_with("0 groups"),
        format!("{count} / {none}"),
    );
    // The group grant's account is picked from a server-side search.
    w.open("/groups/auditors").await;
    let tag = match w.client.find(Locator::Css("#grant-account")).await {
        Ok(e) => e.tag_name().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let found = tag == "select"
        && w.try_fill("#grant-account-q", "bulk-20").await
        && w.try_press("Find").await;
    let choose = async |css: &str, value: &str| match w.client.find(Locator::Css(css)).await {
        Ok(e) => e.select_by_value(value).await.is_ok(),
        Err(_) => false,
    };
    let picked = found
        && choose("#grant-account", "bulk-204").await
        && choose("#grant-role", "read-only").await;
    let added = picked && w.try_press("Add role").await;
    c.check(
        "grant-account-picker",
        added && w.text().await.contains("read-only in bulk-204"),
        format!("tag {tag:?}: {}", w.text().await),
    );
    c.check(
        "notice-grant",
        w.text_of("#notice").await.as_deref() == Some("Role granted."),
        w.text().await,
    );

    // An account without email shows no email; a bad one is refused with
    // the field named in the banner; a good one is confirmed.
    w.open("/accounts/quiet").await;
    let email = w.text_of("#account-email").await;
    c.check(
        "email-absent-is-blank",
        email.as_deref() == Some(""),
        format!("{email:?}"),
    );
    // Longer than the server allows, though the browser's own check passes
    // it: refused by the form's input rules, the field named.
    let long = format!("{}@example.com", "a".repeat(250));
    let saved = w.try_fill("#edit-email", &long).await && w.try_press("Save email").await;
    let banner = w.text_of("#problem").await.unwrap_or_default();
    c.check(
        "banner-names-field (input rules)",
        saved && banner.starts_with("Please correct Email:"),
        &banner,
    );
    // A name the domain refuses: the page is drawn again, the field named.
    w.open("/accounts").await;
    let sent =
        w.try_fill("#account-name", "bad name!").await && w.try_press("Create account").await;
    let banner = w.text_of("#problem").await.unwrap_or_default();
    c.check(
        "banner-names-field (domain)",
        sent && banner.starts_with("Please correct Name:") && w.has("#name-error").await,
        &banner,
    );
    w.open("/accounts/quiet").await;
    let saved =
        w.try_fill("#edit-email", "ops@quiet.example").await && w.try_press("Save email").await;
    c.check(
        "notice-email",
        saved && w.text_of("#notice").await.as_deref() == Some("Email saved."),
        w.text().await,
    );
    w.sign_out().await;

    // Alice (read-write): no Users link (no listUsers), no Roles tab (no
    // listRoles), and the roles page refuses her as ListRoles would.
    w.sign_in("alice", ALICE).await;
    let users_link = w
        .client
        .find_all(Locator::XPath("//nav//a[normalize-space()='Users']"))
        .await
        .unwrap_or_default();
    c.check("no-users-link", users_link.is_empty(), w.text().await);
    w.open("/accounts/acme").await;
    let tab = w.has("#roles-tab").await;
    w.open("/accounts/acme/roles").await;
    let page = w.text().await;
    c.check("roles-tab-hidden-without-listRoles", !tab, "a Roles tab");
    c.check(
        "roles-page-refused-without-listRoles",
        page.contains("Permission denied.") && !page.contains("createApplication"),
        &page,
    );
    // "Signed in as" leads to her own page, where she changes her password.
    let href = w.attr_of("#whoami", "href").await.unwrap_or_default();
    let followed = w.try_follow("#whoami").await;
    c.check(
        "signed-in-as-links-own-page",
        followed
            && href.ends_with("/accounts/acme/users/alice")
            && w.text().await.contains("Change your password"),
        &href,
    );
    // Keys: only active by default; a link shows the rest at once.
    w.open("/keys").await;
    for name in ["stale-key", "fresh-key"] {
        w.fill("#key-name", name).await;
        w.press("Create").await;
        w.press("Done").await;
    }
    w.press("Revoke stale-key").await;
    w.press("Revoke key").await;
    c.check(
        "notice-revoked",
        w.text_of("#notice").await.as_deref() == Some("API key revoked."),
        w.text().await,
    );
    let page = w.text().await;
    c.check(
        "keys-active-only-by-default",
        page.contains("fresh-key") && !page.contains("stale-key"),
        &page,
    );
    let all = w.try_follow("#show-all").await;
    let page = w.text().await;
    c.check(
        "keys-toggle-shows-all",
        all && page.contains("stale-key") && page.contains("revoked"),
        &page,
    );
    let searched = w.try_fill("#keys-q", "fresh").await && w.try_press("Search").await;
    let count = w.text_of("#keys-count").await.unwrap_or_default();
    c.check(
        "keys-search-count",
        searched && count.starts_with("1 key starting with"),
        &count,
    );
    w.sign_out().await;

    // Bob (account-user-admin) may list roles and their members.
    w.sign_in("bob", BOB).await;
    w.open("/accounts/acme/roles/read-write").await;
    let page = w.text().await;
    c.check(
        "roles-for-account-admin",
        page.contains("alice") && page.contains("1 member"),
        &page,
    );
    w.sign_out().await;
}

async fn on_a_phone(w: &Walk, c: &mut Checks) {
    w.sign_in("admin", ADMIN_PASSWORD).await;
    // A phone zooms out to show a page wider than its screen, so the
    // viewport widens with the page: each page is held to the screen's
    // 390 px, not to the viewport.
    let (_, viewport) = w.widths().await;
    c.check("phone-viewport", viewport <= 390, viewport);
    for path in [
        "/keys",
        "/keys?all=on",
        "/accounts",
        "/accounts/acme",
        "/accounts/acme/roles",
        "/accounts/acme/roles/read-write",
        "/accounts/acme/users/alice",
        "/accounts/crowd",
        "/groups",
        "/groups/auditors",
    ] {
        w.open(path).await;
        let (scroll, viewport) = w.widths().await;
        c.check(
            &format!("phone-fits {path}"),
            scroll <= 390 && viewport <= 390,
            format!("{path}: scroll width {scroll}, viewport {viewport}, screen 390"),
        );
    }
    // The actions column is on screen, not past its right edge.
    w.open("/keys").await;
    let right = w
        .client
        .execute(
            "const a = [...document.querySelectorAll('a')].find(e => e.textContent.startsWith('Revoke'));
             return a ? a.getBoundingClientRect().right : 99999;",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::MAX);
    c.check(
        "phone-revoke-on-screen",
        right <= 390.0,
        format!("Revoke ends at {right}"),
    );
    w.shot("keys-phone").await;
    w.open("/accounts/acme/roles").await;
    w.shot("roles-phone").await;
}

/// The seed's SAML users in a real browser: "Sign in with okta" on the
/// console, the IdP's login page (on another site: 127.0.0.1 against the
/// console's localhost), back on the console as a just-in-time user; an
/// API key made by that user when `allow_api_keys_for_saml_users` is on
/// and refused when off; a group the IdP stops asserting is gone at the
/// next sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_walks_in_chromium() {
    use crate::support::{as_admin, spawn_app_with_face};
    use authzd::pb;
    use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
    let idp = crate::saml::idp();
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let client = driver.browser().await;
    for keys_allowed in [true, false] {
        let app = spawn_app_with_face(Backend::Sqlite, |c, http| {
            c.console.public_url = Some(format!("http://localhost:{}", http.port()));
            c.user_authentication.allow_api_keys_for_saml_users = keys_allowed;
        })
        .await;
        app.create_account("engineering").await;
        app.groups()
            .create_group(as_admin(pb::CreateGroupRequest {
                name: "ops".into(),
                description: String::new(),
            }))
            .await
            .unwrap();
        app.groups()
            .add_group_grants(as_admin(pb::GroupGrantsRequest {
                name: "ops".into(),
                grants: vec![pb::GroupGrant {
                    role: "read-write".into(),
                    account: "engineering".into(),
                }],
            }))
            .await
            .unwrap();
        let mut idps = IdentityProviderServiceClient::new(app.channel.clone());
        idps.create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
            name: "okta".into(),
            idp_metadata_xml: idp.metadata.clone(),
            idp_groups_attribute: Some("groups".into()),
            default_account: "engineering".into(),
            default_role: "read-only".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
        idps.add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
            idp: "okta".into(),
            user_groups: vec!["ops".into()],
        }))
        .await
        .unwrap();
        let w = Walk {
            client: client.clone(),
            base: format!("http://localhost:{}", app.http.port()),
            shots: shots.clone(),
        };
        let sign_in = async |groups: &str| {
            w.open("/sign-in").await;
            if keys_allowed && groups == "ops" {
                w.shot("sign-in-sso").await;
            }
            w.press("Sign in with okta").await;
            // The IdP's own page, on its own site.
            let at = w.client.current_url().await.unwrap();
            assert_eq!(
                (at.host_str(), at.path()),
                (Some("127.0.0.1"), "/sso"),
                "{at}"
            );
            w.fill("input[name=username]", "frank@corp.example").await;
            w.fill("input[name=groups]", groups).await;
            w.click("#login").await;
            // Through the IdP's auto-posting page, the ACS and its hop.
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let at = w.client.current_url().await.unwrap();
                if at.host_str() == Some("localhost") && at.path() == "/keys" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not back on the console's keys page: {at}\n{}",
                    w.text().await
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            w.client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css("h1"))
                .await
                .unwrap();
            assert!(w.text().await.contains("frank@corp.example"));
        };
        let frank = async || {
            app.users()
                .get_user(as_admin(pb::GetUserRequest {
                    account: "engineering".into(),
                    username: "frank@corp.example".into(),
                }))
                .await
                .unwrap()
                .into_inner()
        };
        let grants = |user: &pb::User| {
            let mut held: Vec<_> = user
                .roles
                .iter()
                .map(|g| (g.role.clone(), g.group.clone(), g.grant_type()))
                .collect();
            held.sort();
            held
        };
        sign_in("ops").await;
        let user = frank().await;
        assert_eq!(user.r#type(), pb::UserType::Saml);
        assert_eq!(user.idp_name, "okta");
        assert_eq!(
            grants(&user),
            [
                ("read-only".to_owned(), String::new(), pb::GrantType::Direct),
                (
                    "read-write".to_owned(),
                    "ops".to_owned(),
                    pb::GrantType::SsoGroupMembership
                ),
            ]
        );
        // The seed's flow: a SAML user makes their own key, if allowed.
        w.fill("#key-name", "laptop").await;
        w.press("Create").await;
        if keys_allowed {
            let value = w.key_value().await;
            let who = app.key_login(&value).await.unwrap();
            assert_eq!(who.username, "frank@corp.example");
            w.press("Done").await;
        } else {
            assert_ne!(w.path().await, "/keys/reveal");
            let text = w.text().await;
            assert!(
                text.contains("API keys are disabled for SAML users"),
                "{text}"
            );
        }
        w.sign_out().await;
        if keys_allowed {
            // The IdP stops asserting the group: its grant is gone.
            sign_in("").await;
            assert_eq!(
                grants(&frank().await),
                [("read-only".to_owned(), String::new(), pb::GrantType::Direct)]
            );
            w.sign_out().await;
        }
    }
    client.close().await.ok();
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
        page.contains(r#"name="account" value="team one;x""#),
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

/// The address of the link `id` on `page`, unescaped.
fn link_of(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let tag = &page[page[..at].rfind('<')?..at];
    let href = tag.split("href=\"").nth(1)?.split('"').next()?;
    Some(href.replace("&amp;", "&"))
}

/// The first cells of a page's table rows, as text.
fn first_cells_of(page: &str) -> Vec<String> {
    page.split("<tr>")
        .skip(2)
        .filter_map(|row| {
            let cell = row.split("</td>").next()?;
            let text = cell
                .rsplit('>')
                .nth(1)
                .or_else(|| cell.rsplit('>').next())?;
            Some(text.split('<').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Search, counts and pages both ways run in SQL; the same walk on both
/// backends (the browser walk runs on SQLite only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lists_search_and_page_both_ways_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        lists_on(backend).await;
    }
}

async fn lists_on(backend: Backend) {
    use crate::support::as_admin;
    use authzd::pb;
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let host = server.wait_for_address("console listening").await;
    let channel = crate::support::connect(&server.addr).await;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let mut users = pb::user_service_client::UserServiceClient::new(channel);
    for name in (0..105)
        .map(|i| format!("page-{i:03}"))
        .chain(["people".to_owned()])
    {
        accounts
            .create_account(as_admin(pb::CreateAccountRequest {
                name,
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    for i in 0..105 {
        users
            .create_user(as_admin(pb::CreateUserRequest {
                account: "people".into(),
                username: format!("member-{i:03}"),
                r#type: pb::UserType::Saml.into(),
                idp_name: "corp".into(),
                roles: vec!["read-only".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let (head, _) = http(
        &host,
        "POST",
        "/sign-in",
        &["Sec-Fetch-Site: same-origin"],
        &sign_in_body(),
    )
    .await;
    let session = jar(&set_cookies(&head));
    let get = async |path: &str| {
        let (head, page) = http(&host, "GET", path, &[session.as_str()], "").await;
        assert_eq!(status(&head), 200, "{path}: {head}");
        page
    };

    // Accounts by prefix: a count, Next, and Previous back to the start.
    let first = get("/accounts?q=page-").await;
    assert!(
        first.contains("105 accounts starting with"),
        "{backend:?}: {first}"
    );
    assert!(link_of(&first, "accounts-prev").is_none());
    let next = link_of(&first, "accounts-next").expect("a Next link");
    let second = get(&next).await;
    assert_eq!(
        first_cells_of(&second),
        ["page-100", "page-101", "page-102", "page-103", "page-104"],
        "{backend:?}"
    );
    assert!(link_of(&second, "accounts-next").is_none());
    let previous = link_of(&second, "accounts-prev").expect("a Previous link");
    let back = get(&previous).await;
    let rows = first_cells_of(&back);
    assert_eq!(rows.len(), 100, "{backend:?}: {rows:?}");
    assert_eq!(rows.first().map(String::as_str), Some("page-000"));
    assert_eq!(rows.last().map(String::as_str), Some("page-099"));
    assert!(link_of(&back, "accounts-prev").is_none(), "the first page");
    // Case-sensitive on both backends.
    assert!(
        get("/accounts?q=PAGE-")
            .await
            .contains("0 accounts starting with")
    );

    // An account's users and a role's members, the same way.
    let page = get("/accounts/people?q=member-0").await;
    assert!(
        page.contains("100 users starting with"),
        "{backend:?}: {page}"
    );
    assert!(link_of(&page, "users-next").is_none());
    let page = get("/accounts/people").await;
    let next = link_of(&page, "users-next").expect("a Next link");
    let page = get(&next).await;
    assert_eq!(first_cells_of(&page).len(), 5, "{backend:?}");
    let previous = link_of(&page, "users-prev").expect("a Previous link");
    let page = get(&previous).await;
    assert_eq!(
        first_cells_of(&page).first().map(String::as_str),
        Some("member-000")
    );
    let page = get("/accounts/people/roles/read-only?q=member-1").await;
    assert!(
        page.contains("5 members starting with"),
        "{backend:?}: {page}"
    );
    let page = get("/accounts/people/roles/read-only").await;
    assert!(page.contains("105 members"), "{backend:?}: {page}");
    let next = link_of(&page, "members-next").expect("a Next link");
    let page = get(&next).await;
    let previous = link_of(&page, "members-prev").expect("a Previous link");
    let page = get(&previous).await;
    let rows = first_cells_of(&page);
    assert_eq!(
        (rows.len(), rows.first().map(String::as_str)),
        (100, Some("member-000")),
        "{backend:?}"
    );
    drop(server);
}

/// OpenID Connect in a real browser: "Sign in with keycloak" on the
/// console (localhost), the certified provider's own login form (on
/// 127.0.0.1), back on the console as a just-in-time OIDC user with the
/// mapped group; the provider drops the group and the next sign-in drops
/// its grant; the provider's back-channel logout ends the console session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_connect_walks_in_chromium() {
    use crate::support::{as_admin, spawn_app_with_face};
    use authzd::pb;
    use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
    let op = crate::oidc::op();
    let driver = Driver::start().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let client = driver.browser().await;
    let app = spawn_app_with_face(Backend::Sqlite, |c, http| {
        c.console.public_url = Some(format!("http://localhost:{}", http.port()));
    })
    .await;
    let base = format!("http://localhost:{}", app.http.port());
    app.create_account("engineering").await;
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "ops".into(),
            description: String::new(),
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "ops".into(),
            grants: vec![pb::GroupGrant {
                role: "read-write".into(),
                account: "engineering".into(),
            }],
        }))
        .await
        .unwrap();
    let registered = crate::oidc::register_at(&base, "keycloak").await;
    let mut idps = IdentityProviderServiceClient::new(app.channel.clone());
    idps.create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
        name: "keycloak".into(),
        default_account: "engineering".into(),
        default_role: "read-only".into(),
        oidc: Some(pb::OidcSettings {
            issuer: op.issuer.clone(),
            client_id: registered.0.clone(),
            client_secret: registered.1.clone(),
            scopes: vec!["openid".into(), "profile".into(), "groups".into()],
            ..Default::default()
        }),
        ..Default::default()
    }))
    .await
    .unwrap();
    idps.add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
        idp: "keycloak".into(),
        user_groups: vec!["ops".into()],
    }))
    .await
    .unwrap();
    let w = Walk {
        client: client.clone(),
        base: base.clone(),
        shots,
    };
    let sign_in = async |expect_form: bool| {
        w.open("/sign-in").await;
        w.press("Sign in with keycloak").await;
        if expect_form {
            // The provider's own page, on its own site.
            w.client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css("#login"))
                .await
                .unwrap();
            let at = w.client.current_url().await.unwrap();
            assert_eq!(at.host_str(), Some("127.0.0.1"), "{at}");
            w.fill("#login", "grace").await;
            w.fill("#password", "anything").await;
            w.click("#submit").await;
        }
        // Through the callback and its hop, back on the console.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let at = w.client.current_url().await.unwrap();
            if at.host_str() == Some("localhost") && at.path() == "/keys" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not back on the console's keys page: {at}\n{}",
                w.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("h1"))
            .await
            .unwrap();
        assert!(w.text().await.contains("grace"));
    };
    let grace = async || {
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "engineering".into(),
                username: "grace".into(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let grants = |user: &pb::User| {
        let mut held: Vec<_> = user
            .roles
            .iter()
            .map(|g| (g.role.clone(), g.group.clone(), g.grant_type()))
            .collect();
        held.sort();
        held
    };
    crate::oidc::account_at_op(
        "grace",
        "sub-grace",
        serde_json::json!({"preferred_username": "grace", "groups": ["ops"]}),
    )
    .await;
    sign_in(true).await;
    let user = grace().await;
    assert_eq!(user.r#type(), pb::UserType::Oidc);
    assert_eq!(user.idp_name, "keycloak");
    assert_eq!(
        grants(&user),
        [
            ("read-only".to_owned(), String::new(), pb::GrantType::Direct),
            (
                "read-write".to_owned(),
                "ops".to_owned(),
                pb::GrantType::SsoGroupMembership
            ),
        ]
    );
    w.sign_out().await;
    // The provider drops the group; its session signs the browser in again
    // without its form.
    crate::oidc::account_at_op(
        "grace",
        "sub-grace",
        serde_json::json!({"preferred_username": "grace", "groups": []}),
    )
    .await;
    sign_in(false).await;
    assert_eq!(
        grants(&grace().await),
        [("read-only".to_owned(), String::new(), pb::GrantType::Direct)]
    );
    // The provider ends grace's sessions: the console's ends with them.
    crate::oidc::backchannel_logout(&registered.0, "sub-grace").await;
    w.open("/keys").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.path().await != "/sign-in" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the console session outlived its back-channel logout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.open("/keys").await;
    }
    client.close().await.ok();
}
