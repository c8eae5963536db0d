//! Transport: thin tonic adapters over the domain.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod caller;
pub mod codec;
pub mod context;
pub mod convert;
pub mod ext_authz;
pub mod groups;
pub mod health;
pub mod identity_providers;
pub mod input;
pub mod roles;
pub mod status;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use crate::domain::Core;
use crate::pb::account_service_server::AccountServiceServer;
use crate::pb::api_key_service_server::ApiKeyServiceServer;
use crate::pb::audit_service_server::AuditServiceServer;
use crate::pb::auth_service_server::AuthServiceServer;
use crate::pb::group_service_server::GroupServiceServer;
use crate::pb::identity_provider_service_server::IdentityProviderServiceServer;
use crate::pb::role_service_server::RoleServiceServer;
use crate::pb::servers::envoy::authorization_server::AuthorizationServer;
use crate::pb::token_service_server::TokenServiceServer;
use crate::pb::user_service_server::UserServiceServer;

/// Names reported by the health service, besides the overall "".
pub const SERVICE_NAMES: [&str; 9] = [
    <AuthServiceServer<auth::AuthApi> as NamedService>::NAME,
    <AccountServiceServer<accounts::AccountApi> as NamedService>::NAME,
    <UserServiceServer<users::UserApi> as NamedService>::NAME,
    <RoleServiceServer<roles::RoleApi> as NamedService>::NAME,
    <GroupServiceServer<groups::GroupApi> as NamedService>::NAME,
    <ApiKeyServiceServer<api_keys::ApiKeyApi> as NamedService>::NAME,
    <TokenServiceServer<tokens::TokenApi> as NamedService>::NAME,
    <AuditServiceServer<audit::AuditApi> as NamedService>::NAME,
    <IdentityProviderServiceServer<identity_providers::IdentityProviderApi> as NamedService>::NAME,
];

/// The authzd services, each behind the interceptor that builds its
/// `CallContext`: the check RPCs take a caller key, the admin RPCs their
/// caller's own credentials.
pub fn routes(
    core: &Core,
    caller_keys: Arc<ArcSwap<caller::CallerKeys>>,
    max_message_bytes: usize,
    gate: Option<ext_authz::ExtAuthzApi>,
) -> Routes {
    let token_keys = caller_keys.clone();
    let gate_keys = caller_keys.clone();
    let auth = InterceptedService::new(
        AuthServiceServer::new(auth::AuthApi::new(core.clone()))
            .max_decoding_message_size(max_message_bytes),
        move |req| context::check(&caller_keys, req),
    );
    let routes = Routes::new(auth)
        .add_service(InterceptedService::new(
            AccountServiceServer::new(accounts::AccountApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            UserServiceServer::new(users::UserApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            RoleServiceServer::new(roles::RoleApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            GroupServiceServer::new(groups::GroupApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            ApiKeyServiceServer::new(api_keys::ApiKeyApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            AuditServiceServer::new(audit::AuditApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            IdentityProviderServiceServer::new(identity_providers::IdentityProviderApi::new(
                core.clone(),
            ))
            .max_decoding_message_size(max_message_bytes),
            context::admin,
        ))
        .add_service(InterceptedService::new(
            TokenServiceServer::new(tokens::TokenApi::new(core.clone()))
                .max_decoding_message_size(max_message_bytes),
            move |req| context::tokens(&token_keys, req),
        ));
    match gate {
        // Envoy's Check is a check RPC: the same caller keys or client
        // certificates as Authenticate and Authorize.
        Some(api) => routes.add_service(InterceptedService::new(
            AuthorizationServer::new(api).max_decoding_message_size(max_message_bytes),
            move |req| context::check(&gate_keys, req),
        )),
        None => routes,
    }
}
