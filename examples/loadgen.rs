//! The load generator of `bench/run`: a closed loop of gRPC calls over
//! `--connections` HTTP/2 connections with `--streams` calls in flight on
//! each, counting only calls that ended with status OK. Prints one line:
//! `target=… rps=… p50_ms=… p99_ms=… ok=… errors=…`.
//!
//!   loadgen setup --target ADDR --admin-password P --keys-file keys.txt --keys 10000
//!   loadgen run --target ADDR --caller-key K --mode authenticate-key --key-file keys.txt
//!
//!   loadgen storm --target ADDR --caller-key K --key-file keys.txt --guessers 200
//!
//! `storm` measures a legitimate password login (client address 10.0.0.2)
//! and API-key checks, idle and then while `--guessers` clients guess
//! passwords of unknown users from client address 10.0.0.1 as fast as
//! they are answered, and prints the ratios.
//!
//!   loadgen flood --target ADDR --caller-key K --key-file keys.txt --failures 10000
//!
//! `flood` measures warm-cache API-key checks idle, then while
//! `--failures` failed API-key authentications (the bench key's id with
//! wrong secrets, each from a client address of its own, as a botnet would
//! send them: no per-source limit applies) are sent as fast as they are
//! answered, and prints the checks' p99 in both phases and the ratio. Every
//! failure is a refusal for the audit trail.
//!
//! Modes: `health`, `authenticate-key`, `authenticate-token` (the access
//! token `setup` writes to `<keys-file>.token`), `authorize-user` (3
//! actions), `authorize-key` (3 actions), `authenticate-password`,
//! `ext-authz-key` and `ext-authz-token` (Envoy's Check of `GET /images`
//! with the key or the access token). With `--keys N`
//! above 1, each call takes the next of N keys (a cache-miss run when the
//! cache holds fewer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authzd::pb;
use authzd::pb::api_key_service_client::ApiKeyServiceClient;
use authzd::pb::auth_service_client::AuthServiceClient;
use base64::Engine;
use clap::{Parser, Subcommand};
use tonic::Request;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the bench account, user and keys through the admin RPCs.
    Setup {
        #[arg(long)]
        target: String,
        #[arg(long)]
        admin_password: String,
        /// Where to write the key values, one per line.
        #[arg(long)]
        keys_file: String,
        #[arg(long, default_value_t = 1)]
        keys: usize,
    },
    /// Drives one target and prints its figures.
    Run {
        #[arg(long)]
        target: String,
        /// A label for the output line.
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long, default_value = "")]
        caller_key: String,
        #[arg(long)]
        mode: String,
        #[arg(long, default_value = "")]
        keys_file: String,
        /// How many of the file's keys to cycle through.
        #[arg(long, default_value_t = 1)]
        keys: usize,
        #[arg(long, default_value_t = 10)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Seconds of calls before measuring (connections, caches).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// A flood of failed API-key authentications beside key checks.
    Flood {
        #[arg(long)]
        target: String,
        #[arg(long)]
        caller_key: String,
        #[arg(long)]
        keys_file: String,
        #[arg(long, default_value_t = 10_000)]
        failures: usize,
        /// Concurrent failing calls.
        #[arg(long, default_value_t = 32)]
        flooders: usize,
        /// Seconds of idle measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent API-key checks.
        #[arg(long, default_value_t = 10)]
        key_streams: usize,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// A password-guessing storm from one source, measured from another.
    Storm {
        #[arg(long)]
        target: String,
        #[arg(long)]
        caller_key: String,
        #[arg(long)]
        keys_file: String,
        #[arg(long, default_value_t = 200)]
        guessers: usize,
        /// Seconds measured in each phase (idle, storm).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent API-key checks.
        #[arg(long, default_value_t = 4)]
        key_streams: usize,
        #[arg(long, default_value = "")]
        label: String,
    },
}

const USER: &str = "bench-user";
const USER_PASSWORD: &str = "bench-user-password";
const ACTIONS: [&str; 3] = ["listImages", "getImage", "createImage"];

async fn connect(target: &str) -> Channel {
    Channel::from_shared(format!("http://{target}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {target}: {e}"))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn with_auth<T>(auth: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if !auth.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    request
}

async fn setup(target: &str, admin_password: &str, keys_file: &str, keys: usize) {
    let channel = connect(target).await;
    let admin = basic("admin", admin_password);
    let _ = pb::account_service_client::AccountServiceClient::new(channel.clone())
        .create_account(with_auth(
            &admin,
            pb::CreateAccountRequest {
                name: "bench".into(),
                ..Default::default()
            },
        ))
        .await;
    let _ = pb::user_service_client::UserServiceClient::new(channel.clone())
        .create_user(with_auth(
            &admin,
            pb::CreateUserRequest {
                account: "bench".into(),
                username: USER.into(),
                password: USER_PASSWORD.into(),
                roles: vec!["read-write".into()],
                ..Default::default()
            },
        ))
        .await;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 30 * 86_400;
    let next = Arc::new(AtomicUsize::new(0));
    let values = Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (channel, admin, next, values) =
                (channel.clone(), admin.clone(), next.clone(), values.clone());
            tokio::spawn(async move {
                let mut client = ApiKeyServiceClient::new(channel);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys {
                        return;
                    }
                    let created = client
                        .create_api_key(with_auth(
                            &admin,
                            pb::CreateApiKeyRequest {
                                account: "bench".into(),
                                username: USER.into(),
                                name: format!("bench-{i}"),
                                description: String::new(),
                                expires_at: Some(prost_types::Timestamp {
                                    seconds: expires,
                                    nanos: 0,
                                }),
                            },
                        ))
                        .await
                        .unwrap_or_else(|e| panic!("creating key {i}: {e}"))
                        .into_inner();
                    values.lock().unwrap().push(created.value);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let values = std::mem::take(&mut *values.lock().unwrap());
    std::fs::write(keys_file, values.join("\n") + "\n").unwrap();
    eprintln!("setup: {} keys in {keys_file}", values.len());
    // An access token of the same user, for `authenticate-token`.
    let token = pb::token_service_client::TokenServiceClient::new(channel)
        .create_token(pb::CreateTokenRequest {
            grant: Some(pb::create_token_request::Grant::Password(
                pb::PasswordCredentials {
                    username: USER.into(),
                    password: USER_PASSWORD.into(),
                },
            )),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("creating a token: {e}"))
        .into_inner();
    let tokens_file = format!("{keys_file}.token");
    std::fs::write(&tokens_file, token.access_token + "\n").unwrap();
    eprintln!("setup: an access token in {tokens_file}");
}

/// One call; true when it ended with status OK.
async fn call(channel: &Channel, mode: &str, caller: &str, key: &str) -> bool {
    use pb::authenticate_request::Credentials;
    use pb::authorize_request::Subject;
    let mut auth = AuthServiceClient::new(channel.clone());
    let actions = || ACTIONS.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    match mode {
        "health" => HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok(),
        "authenticate-key" => auth
            .authenticate(with_auth(
                caller,
                pb::AuthenticateRequest {
                    credentials: Some(Credentials::ApiKey(key.to_owned())),
                    ..Default::default()
                },
            ))
            .await
            .is_ok(),
        "authenticate-token" => auth
            .authenticate(with_auth(
                caller,
                pb::AuthenticateRequest {
                    credentials: Some(Credentials::Token(key.to_owned())),
                    ..Default::default()
                },
            ))
            .await
            .is_ok(),
        "authenticate-password" => auth
            .authenticate(with_auth(
                caller,
                pb::AuthenticateRequest {
                    credentials: Some(Credentials::Password(pb::PasswordCredentials {
                        username: USER.into(),
                        password: USER_PASSWORD.into(),
                    })),
                    ..Default::default()
                },
            ))
            .await
            .is_ok(),
        "authorize-user" => auth
            .authorize(with_auth(
                caller,
                pb::AuthorizeRequest {
                    subject: Some(Subject::Username(USER.into())),
                    actions: actions(),
                    ..Default::default()
                },
            ))
            .await
            .is_ok_and(|r| r.get_ref().allowed),
        "authorize-key" => auth
            .authorize(with_auth(
                caller,
                pb::AuthorizeRequest {
                    subject: Some(Subject::ApiKey(key.to_owned())),
                    actions: actions(),
                    ..Default::default()
                },
            ))
            .await
            .is_ok_and(|r| r.get_ref().allowed),
        "ext-authz-key" => {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("_api_key:{key}"));
            envoy_check(channel, caller, format!("Basic {basic}")).await
        }
        "ext-authz-token" => envoy_check(channel, caller, format!("Bearer {key}")).await,
        other => panic!("unknown mode {other}"),
    }
}

/// Envoy's Check for `GET /v2/images?page=1` (listImages in the user's own
/// account, under the default prefix) with `authorization`; true when allowed.
async fn envoy_check(channel: &Channel, caller: &str, authorization: String) -> bool {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/v2/images?page=1".into(),
                    headers: [
                        ("authorization".to_owned(), authorization),
                        ("user-agent".to_owned(), "loadgen".to_owned()),
                        ("accept".to_owned(), "application/json".to_owned()),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    AuthorizationClient::new(channel.clone())
        .check(with_auth(caller, request))
        .await
        .is_ok_and(|r| r.get_ref().status.as_ref().is_some_and(|s| s.code == 0))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    target: String,
    label: String,
    caller_key: String,
    mode: String,
    keys_file: String,
    keys: usize,
    connections: usize,
    streams: usize,
    seconds: f64,
    warmup: f64,
) {
    let values: Vec<String> = if keys_file.is_empty() {
        vec![String::new()]
    } else {
        std::fs::read_to_string(&keys_file)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .take(keys.max(1))
            .map(str::to_owned)
            .collect()
    };
    let values = Arc::new(values);
    let caller = Arc::new(if caller_key.is_empty() {
        String::new()
    } else {
        format!("Bearer {caller_key}")
    });
    let mode = Arc::new(mode);
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(connect(&target).await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(warmup);
    let deadline = measure_from + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..connections.max(1) * streams.max(1))
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let (values, caller, mode, next) =
                (values.clone(), caller.clone(), mode.clone(), next.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
                loop {
                    let begun = Instant::now();
                    if begun >= deadline {
                        break;
                    }
                    let key = &values[next.fetch_add(1, Ordering::Relaxed) % values.len()];
                    let ok = call(&channel, &mode, &caller, key).await;
                    if begun >= measure_from {
                        if ok {
                            latencies.push(begun.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "target={} rps={:.0} p50_ms={:.3} p99_ms={:.3} ok={} errors={}",
        if label.is_empty() {
            mode.as_str()
        } else {
            &label
        },
        latencies.len() as f64 / seconds,
        pct(0.50),
        pct(0.99),
        latencies.len(),
        errors
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Legitimate traffic for `seconds`: one password login at a time and
/// `key_streams` key checks. Returns the sorted login and key latencies.
async fn legitimate(
    channel: &Channel,
    caller: &str,
    key: &str,
    key_streams: usize,
    seconds: f64,
) -> (Vec<Duration>, Vec<Duration>) {
    use pb::authenticate_request::Credentials;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let login = {
        let (mut auth, caller) = (AuthServiceClient::new(channel.clone()), caller.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let begun = Instant::now();
                let ok = auth
                    .authenticate(with_auth(
                        &caller,
                        pb::AuthenticateRequest {
                            credentials: Some(Credentials::Password(pb::PasswordCredentials {
                                username: USER.into(),
                                password: USER_PASSWORD.into(),
                            })),
                            client_address: "10.0.0.2".into(),
                        },
                    ))
                    .await
                    .is_ok();
                assert!(ok, "the legitimate login failed");
                latencies.push(begun.elapsed());
            }
            latencies
        })
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let key_latencies = key_checks(channel, caller, key, key_streams, stop).await;
    timer.await.unwrap();
    let mut login = login.await.unwrap();
    login.sort();
    (login, key_latencies)
}

#[allow(clippy::too_many_arguments)]
async fn storm(
    target: String,
    caller_key: String,
    keys_file: String,
    guessers: usize,
    seconds: f64,
    key_streams: usize,
    label: String,
) {
    use pb::authenticate_request::Credentials;
    let key = std::fs::read_to_string(&keys_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let caller = format!("Bearer {caller_key}");
    // The measured traffic has a connection of its own, like another
    // client would; the guessers share a few.
    let channel = connect(&target).await;
    let _ = legitimate(&channel, &caller, &key, key_streams, 1.0).await;
    let (idle_login, idle_key) = legitimate(&channel, &caller, &key, key_streams, seconds).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counts = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let mut guess_channels = Vec::new();
    for _ in 0..4 {
        guess_channels.push(connect(&target).await);
    }
    let tasks: Vec<_> = (0..guessers)
        .map(|g| {
            let mut auth = AuthServiceClient::new(guess_channels[g % 4].clone());
            let (caller, stop, counts) = (caller.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let code = match auth
                        .authenticate(with_auth(
                            &caller,
                            pb::AuthenticateRequest {
                                credentials: Some(Credentials::Password(pb::PasswordCredentials {
                                    username: format!("guess-{g}-{n}"),
                                    password: "guess".into(),
                                })),
                                client_address: "10.0.0.1".into(),
                            },
                        ))
                        .await
                    {
                        Ok(_) => tonic::Code::Ok,
                        Err(status) => status.code(),
                    };
                    *counts
                        .lock()
                        .unwrap()
                        .entry(format!("{code:?}"))
                        .or_default() += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    counts.lock().unwrap().clear();
    let (storm_login, storm_key) = legitimate(&channel, &caller, &key, key_streams, seconds).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    let guesses = counts
        .iter()
        .map(|(code, n)| format!("{code}={:.0}/s", *n as f64 / seconds))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{label}: login p95 idle {:.1} ms, storm {:.1} ms ({:.2}x); \
         key p99 idle {:.2} ms, storm {:.2} ms ({:.2}x); \
         {guessers} guessers answered: {guesses}",
        percentile(&idle_login, 0.95),
        percentile(&storm_login, 0.95),
        percentile(&storm_login, 0.95) / percentile(&idle_login, 0.95),
        percentile(&idle_key, 0.99),
        percentile(&storm_key, 0.99),
        percentile(&storm_key, 0.99) / percentile(&idle_key, 0.99),
    );
}

/// Key checks on `streams` streams until `stop`; their sorted latencies.
async fn key_checks(
    channel: &Channel,
    caller: &str,
    key: &str,
    streams: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    use pb::authenticate_request::Credentials;
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (mut auth, caller, key, stop) = (
                AuthServiceClient::new(channel.clone()),
                caller.to_owned(),
                key.to_owned(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let begun = Instant::now();
                    let ok = auth
                        .authenticate(with_auth(
                            &caller,
                            pb::AuthenticateRequest {
                                credentials: Some(Credentials::ApiKey(key.clone())),
                                client_address: "10.0.0.3".into(),
                            },
                        ))
                        .await
                        .is_ok();
                    assert!(ok, "a key check failed");
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies.sort();
    latencies
}

#[allow(clippy::too_many_arguments)]
async fn flood(
    target: String,
    caller_key: String,
    keys_file: String,
    failures: usize,
    flooders: usize,
    seconds: f64,
    key_streams: usize,
    label: String,
) {
    use authzd::domain::authn::key_format;
    use pb::authenticate_request::Credentials;
    use std::sync::atomic::AtomicBool;
    let key = std::fs::read_to_string(&keys_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let mut parts = key.split('_');
    let (prefix, key_id) = (parts.next().unwrap(), parts.next().unwrap());
    // The right key id, a valid checksum, a wrong secret: the whole check
    // runs, and fails.
    let wrong: Arc<Vec<String>> = Arc::new(
        (0..failures)
            .map(|_| {
                key_format::regenerate(prefix, key_id)
                    .value
                    .expose()
                    .to_owned()
            })
            .collect(),
    );
    let caller = format!("Bearer {caller_key}");
    let channel = connect(&target).await;
    let timed = |stop: Arc<AtomicBool>, after: f64| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(after)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    // Warm-up, then idle.
    let stop = Arc::new(AtomicBool::new(false));
    timed(stop.clone(), 1.0);
    key_checks(&channel, &caller, &key, key_streams, stop).await;
    let stop = Arc::new(AtomicBool::new(false));
    timed(stop.clone(), seconds);
    let idle = key_checks(&channel, &caller, &key, key_streams, stop).await;

    let mut flood_channels = Vec::new();
    for _ in 0..4 {
        flood_channels.push(connect(&target).await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let flooding: Vec<_> = (0..flooders)
        .map(|f| {
            let mut auth = AuthServiceClient::new(flood_channels[f % 4].clone());
            let (caller, next, refused, wrong) =
                (caller.clone(), next.clone(), refused.clone(), wrong.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(value) = wrong.get(i) else { break };
                    let result = auth
                        .authenticate(with_auth(
                            &caller,
                            pb::AuthenticateRequest {
                                credentials: Some(Credentials::ApiKey(value.clone())),
                                client_address: format!(
                                    "10.{}.{}.{}",
                                    (i >> 16) & 255,
                                    (i >> 8) & 255,
                                    i & 255
                                ),
                            },
                        ))
                        .await;
                    if matches!(&result, Err(s) if s.code() == tonic::Code::Unauthenticated) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let ender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            for t in flooding {
                t.await.unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let flooded = key_checks(&channel, &caller, &key, key_streams, stop).await;
    ender.await.unwrap();
    let took = began.elapsed().as_secs_f64();
    println!(
        "{label}: key p99 idle {:.3} ms, flood {:.3} ms ({:.2}x); p50 idle {:.3} ms, flood {:.3} ms; \
         {} of {failures} failed authentications refused in {took:.1} s ({:.0}/s), {} checks during the flood",
        percentile(&idle, 0.99),
        percentile(&flooded, 0.99),
        percentile(&flooded, 0.99) / percentile(&idle, 0.99),
        percentile(&idle, 0.5),
        percentile(&flooded, 0.5),
        refused.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed) as f64 / took,
        flooded.len(),
    );
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Command::Setup {
            target,
            admin_password,
            keys_file,
            keys,
        } => setup(&target, &admin_password, &keys_file, keys).await,
        Command::Run {
            target,
            label,
            caller_key,
            mode,
            keys_file,
            keys,
            connections,
            streams,
            seconds,
            warmup,
        } => {
            run(
                target,
                label,
                caller_key,
                mode,
                keys_file,
                keys,
                connections,
                streams,
                seconds,
                warmup,
            )
            .await
        }
        Command::Flood {
            target,
            caller_key,
            keys_file,
            failures,
            flooders,
            seconds,
            key_streams,
            label,
        } => {
            flood(
                target,
                caller_key,
                keys_file,
                failures,
                flooders,
                seconds,
                key_streams,
                label,
            )
            .await
        }
        Command::Storm {
            target,
            caller_key,
            keys_file,
            guessers,
            seconds,
            key_streams,
            label,
        } => {
            storm(
                target,
                caller_key,
                keys_file,
                guessers,
                seconds,
                key_streams,
                label,
            )
            .await
        }
    }
}
