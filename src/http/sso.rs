//! Single sign-on at `/sso/`: what identity providers and browsers on
//! their way back from one reach. Public (an IdP's administrator fetches
//! the metadata, an IdP's page posts the response), no console cookies,
//! nothing kept.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Names, Table};
use crate::domain::Core;
use crate::error::Error;

/// The group's routes and their audit names.
pub fn router(core: Core) -> (axum::Router, Names) {
    let (router, names) = Table::new("sso:Document")
        .get("/sso/saml/{idp}/metadata", sp_metadata)
        .into_parts();
    (router.with_state(core), names)
}

/// The SP metadata of one identity provider, to paste into the IdP.
async fn sp_metadata(State(core): State<Core>, Path(idp): Path<String>) -> Response {
    match core.sp_metadata(&idp).await {
        Ok(Some(xml)) => (
            [
                (header::CONTENT_TYPE, "application/samlmetadata+xml"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            xml,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such identity provider\n").into_response(),
        Err(Error::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry later\n",
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "SP metadata");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}
