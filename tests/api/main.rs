//! One integration-test binary: each test starts authzd in-process on
//! 127.0.0.1:0 with a database of its own, on SQLite and on Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod accounts;
mod api_keys;
mod audit;
mod auth;
pub mod binary;
mod cache;
mod config;
mod console;
mod console_security;
mod cookbook;
mod e2e;
mod exhaustion;
mod ext_authz;
mod faults;
mod follow;
mod fuzz;
mod gate_parity;
mod groups;
pub mod health;
mod http_face;
pub mod identity_providers;
mod limits;
mod lockout;
mod oidc;
mod ops;
mod restart;
mod roles;
mod saml;
mod scale;
mod scim;
mod security;
mod tokens;
mod users;
mod wire;
