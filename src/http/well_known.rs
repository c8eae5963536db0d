//! Public documents at `/.well-known/`: the token signing keys (JWT
//! libraries fetch them over HTTP). No session, no cookies; verifiers and
//! proxies may keep a copy for a few minutes, which is how long a key
//! added by a rotation may take to be seen (docs/tokens.md).

use axum::http::header;

use super::{Names, Table};

/// The group's routes and their audit names.
pub fn router(jwks: String) -> (axum::Router, Names) {
    let (router, names) = Table::new("well-known:Document")
        .get("/.well-known/jwks.json", move || {
            let jwks = jwks.clone();
            async move { jwks_response(jwks) }
        })
        .into_parts();
    (router, names)
}

/// The JWKS document as every listener serves it.
pub fn jwks_response(jwks: String) -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        jwks,
    )
}
