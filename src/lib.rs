//! authzd: accounts, users, roles and credential checks over gRPC.
//!
//! `prepare` opens and migrates the database and bootstraps it; `serve`
//! runs the gRPC server on a bound listener until a shutdown future
//! completes. Tests assemble the server in-process with these two.

pub mod cache;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod pb;
pub mod server;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;

pub use server::{check_tls, serve, serve_with_reloads};
pub use startup::{migrate, prepare};
