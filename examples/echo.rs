//! The ceiling for `bench/run`: a bare tonic server, same tonic and prost,
//! that answers `authz.v1.AuthService` and Envoy's
//! `envoy.service.auth.v3.Authorization/Check` at once with a canned
//! response of the shape authzd sends (no caller-key check, no cache, no
//! database).
//! It accepts connections with TCP_NODELAY and allocates with mimalloc, as
//! authzd does, so the ratio measures what authzd's own work costs.
//!
//!   cargo run --release --example echo -- 127.0.0.1:0
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authzd::pb;
use authzd::pb::auth_service_server::{AuthService, AuthServiceServer};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn principal() -> pb::Principal {
    pb::Principal {
        user_id: "6f1c2a52-1d67-4a32-9f5e-0d1f3c2b7a10".into(),
        username: "bench-user".into(),
        user_type: pb::UserType::Native.into(),
        account: "bench".into(),
        account_type: pb::AccountType::User.into(),
        credential_kind: pb::CredentialKind::ApiKey.into(),
        grants: vec![pb::RoleGrant {
            role: "read-write".into(),
            account: "bench".into(),
            group: String::new(),
            grant_type: pb::GrantType::Direct.into(),
        }],
        global_admin: false,
        api_key: Some(pb::ApiKeyRef {
            id: "AbCdEfGhIjKl".into(),
            name: "bench".into(),
        }),
        token_id: String::new(),
    }
}

struct Echo;

#[tonic::async_trait]
impl AuthService for Echo {
    async fn authenticate(
        &self,
        _request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Ok(Response::new(pb::AuthenticateResponse {
            principal: Some(principal()),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let actions = request.into_inner().actions;
        Ok(Response::new(pb::AuthorizeResponse {
            principal: Some(principal()),
            account: "bench".into(),
            allowed: true,
            decisions: actions
                .into_iter()
                .map(|action| pb::Decision {
                    action,
                    allowed: true,
                    reason: pb::DecisionReason::Role.into(),
                    role: "read-write".into(),
                    group: String::new(),
                    domain: "bench".into(),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl Authorization for Echo {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        };
        let facts = [
            ("x-authz-operation", "operation", "list_images"),
            ("x-authz-user", "user", "bench-user"),
            (
                "x-authz-user-id",
                "user_id",
                "6f1c2a52-1d67-4a32-9f5e-0d1f3c2b7a10",
            ),
            ("x-authz-account", "account", "bench"),
            ("x-authz-credential", "credential", "api_key"),
            ("x-anchore-account", "", "bench"),
        ];
        let fields = facts
            .iter()
            .filter(|(_, field, _)| !field.is_empty())
            .map(|(_, field, value)| {
                (
                    (*field).to_owned(),
                    Value {
                        kind: Some(Kind::StringValue((*value).to_owned())),
                    },
                )
            })
            .collect();
        Ok(Response::new(CheckResponse {
            status: Some(envoy_types::pb::google::rpc::Status::default()),
            dynamic_metadata: Some(Struct { fields }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: facts.iter().map(|(h, _, v)| header(h, v)).collect(),
                ..Default::default()
            })),
        }))
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("echo listening on {}", listener.local_addr().unwrap());
    let (_, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(AuthServiceServer::new(Echo))
        .add_service(AuthorizationServer::new(Echo))
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .unwrap();
}
