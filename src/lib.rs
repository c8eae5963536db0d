//! authzd: accounts, users, roles and credential checks over gRPC.
//!
//! `prepare` opens and migrates the database and bootstraps it; `serve`
//! runs the gRPC server on a bound listener until a shutdown future
//! completes, and `serve_listeners` the HTTP face and the metrics port
//! with it. Tests assemble the server in-process with these.

pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod model;
pub mod pb;
pub mod server;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;

#[cfg(test)]
mod layers;

pub use server::{Listeners, check_tls, serve, serve_listeners, serve_with_reloads};
pub use startup::{migrate, prepare};
