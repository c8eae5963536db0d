//! A small closed-loop load generator for the check RPCs, to measure what a
//! sibling service sees. Not a test: figures go to the README.
//!
//!   cargo run --release --example loadgen -- \
//!     --target 127.0.0.1:50051 --caller-key KEY --mode api-key --credential azk_… \
//!     --concurrency 32 --seconds 10
//!
//! Modes: `api-key` (Authenticate with a key), `password` (Authenticate with
//! `user:password`), `authorize` (Authorize a username for listImages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use authzd::pb;
use authzd::pb::auth_service_client::AuthServiceClient;
use clap::Parser;
use tonic::Request;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    #[arg(long, default_value = "")]
    caller_key: String,
    #[arg(long, default_value = "api-key")]
    mode: String,
    /// An API key value, `user:password`, or a username (authorize).
    #[arg(long)]
    credential: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// HTTP/2 connections to spread the load over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

fn request<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if !key.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

async fn call(client: &mut AuthServiceClient<Channel>, args: &Args) -> bool {
    use pb::authenticate_request::Credentials;
    match args.mode.as_str() {
        "api-key" => client
            .authenticate(request(
                &args.caller_key,
                pb::AuthenticateRequest {
                    credentials: Some(Credentials::ApiKey(args.credential.clone())),
                },
            ))
            .await
            .is_ok(),
        "password" => {
            let (username, password) = args.credential.split_once(':').expect("user:password");
            client
                .authenticate(request(
                    &args.caller_key,
                    pb::AuthenticateRequest {
                        credentials: Some(Credentials::Password(pb::PasswordCredentials {
                            username: username.into(),
                            password: password.into(),
                        })),
                    },
                ))
                .await
                .is_ok()
        }
        "authorize" => client
            .authorize(request(
                &args.caller_key,
                pb::AuthorizeRequest {
                    username_credential: 0,
                    subject: Some(pb::authorize_request::Subject::Username(
                        args.credential.clone(),
                    )),
                    account: String::new(),
                    actions: vec!["listImages".into()],
                },
            ))
            .await
            .is_ok(),
        other => panic!("unknown mode {other}"),
    }
}

#[tokio::main]
async fn main() {
    let args = std::sync::Arc::new(Args::parse());
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{}", args.target))
                .unwrap()
                .connect()
                .await
                .expect("connect"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let args = args.clone();
            let mut client = AuthServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(async move {
                let (mut latencies, mut failures) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    if call(&mut client, &args).await {
                        latencies.push(started.elapsed());
                    } else {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let (mut latencies, mut failures) = (Vec::new(), 0);
    for worker in workers {
        let (l, f) = worker.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "mode={} ok={} failed={} rps={:.0} p50={:.2}ms p99={:.2}ms",
        args.mode,
        latencies.len(),
        failures,
        latencies.len() as f64 / args.seconds as f64,
        pct(0.50),
        pct(0.99)
    );
}
