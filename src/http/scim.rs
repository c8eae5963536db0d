//! SCIM 2.0 at `/scim/v2/{idp}/` (docs/scim.md): what an identity
//! provider's provisioning client (Okta, Entra ID) reaches. No cookies;
//! every request carries the provider's bearer token, checked before
//! anything is read (a wrong one costs its source a limiter token).
//! Answers are `application/scim+json`; errors are SCIM error documents.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, put};
use serde_json::{Value, json};

use super::{Names, Table};
use crate::domain::Core;
use crate::domain::authn::sources::Source;
use crate::domain::scim::{Kind, ListQuery, ScimClient, ScimError, resources};

const SCIM_JSON: &str = "application/scim+json";

/// The group's routes and their audit names.
pub fn router(core: Core) -> (axum::Router, Names) {
    let table = Table::new("scim:Read")
        .get(
            "/scim/v2/{idp}/ServiceProviderConfig",
            service_provider_config,
        )
        .get("/scim/v2/{idp}/ResourceTypes", resource_types)
        .get("/scim/v2/{idp}/ResourceTypes/{id}", resource_type)
        .get("/scim/v2/{idp}/Schemas", schemas)
        .get("/scim/v2/{idp}/Schemas/{id}", schema)
        .post("/scim/v2/{idp}/.search", "scim:Search", search)
        .get("/scim/v2/{idp}/Users", list_users)
        .post("/scim/v2/{idp}/Users", "scim:CreateUser", create_user)
        .get("/scim/v2/{idp}/Users/{id}", get_user)
        .get("/scim/v2/{idp}/Groups", list_groups)
        .post("/scim/v2/{idp}/Groups", "scim:CreateGroup", create_group)
        .get("/scim/v2/{idp}/Groups/{id}", get_group);
    let writes: [(&'static str, Kind, [&'static str; 3]); 2] = [
        (
            "/scim/v2/{idp}/Users/{id}",
            Kind::Users,
            ["scim:ReplaceUser", "scim:PatchUser", "scim:DeleteUser"],
        ),
        (
            "/scim/v2/{idp}/Groups/{id}",
            Kind::Groups,
            ["scim:ReplaceGroup", "scim:PatchGroup", "scim:DeleteGroup"],
        ),
    ];
    let mut table = table;
    for (path, kind, [replace_name, patch_name, delete_name]) in writes {
        let replace: MethodRouter<Core> = put(move |state, peer, ids, headers, body| {
            write_resource(kind, false, state, peer, ids, headers, body)
        });
        let patched: MethodRouter<Core> = patch(move |state, peer, ids, headers, body| {
            write_resource(kind, true, state, peer, ids, headers, body)
        });
        let deleted: MethodRouter<Core> = delete(move |state, peer, ids, headers| {
            delete_resource(kind, state, peer, ids, headers)
        });
        table = table
            .route(Method::PUT, path, replace_name, replace)
            .route(Method::PATCH, path, patch_name, patched)
            .route(Method::DELETE, path, delete_name, deleted);
    }
    let (router, names) = table.into_parts();
    let router = router
        // Any other address under a provider's base is a SCIM 404.
        .route("/scim/v2/{idp}/{*rest}", get(unknown).post(unknown))
        .with_state(core);
    (router, names)
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

fn refused(err: &ScimError) -> Response {
    answer(
        StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST),
        &err.document(),
    )
}

/// A resource with its version as the ETag (and, when made, its address).
fn resource(status: StatusCode, value: &Value) -> Response {
    let mut response = answer(status, value);
    if let Some(tag) = value["meta"]["version"]
        .as_str()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    if status == StatusCode::CREATED
        && let Some(at) = value["meta"]["location"]
            .as_str()
            .and_then(|l| HeaderValue::from_str(l).ok())
    {
        response.headers_mut().insert(header::LOCATION, at);
    }
    response
}

async fn unknown() -> Response {
    refused(&ScimError::not_found("SCIM endpoint"))
}

/// The provider's client, or the 401 that ends the request.
async fn client(
    core: &Core,
    idp: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<ScimClient, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match core
        .scim_client(idp, authorization, Source::from_ip(peer.ip()))
        .await
    {
        Ok(client) => Ok(client),
        Err(err) => {
            let err = ScimError::from(err);
            let mut response = refused(&err);
            if err.status == 401 {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scim\""),
                );
            }
            Err(response)
        }
    }
}

/// The body as JSON: anything else is a SCIM 400 (`invalidSyntax`).
async fn json_body(body: axum::body::Body) -> Result<Value, Response> {
    let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES_USIZE)
        .await
        .map_err(|_| {
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &ScimError {
                    status: 413,
                    scim_type: None,
                    detail: format!("the body is larger than {} bytes", super::MAX_BODY_BYTES),
                }
                .document(),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|_| refused(&ScimError::bad("invalidSyntax", "the body is not JSON")))
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

type Peer = ConnectInfo<SocketAddr>;

macro_rules! authenticated {
    ($core:expr, $idp:expr, $peer:expr, $headers:expr) => {
        match client(&$core, &$idp, $peer.0, &$headers).await {
            Ok(client) => client,
            Err(response) => return response,
        }
    };
}

async fn service_provider_config(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let base = core.scim_base(&client.idp.name);
    answer(
        StatusCode::OK,
        &resources::service_provider_config(&base, core.settings().scim.max_page_size),
    )
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [resources::LIST_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn resource_types(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let base = core.scim_base(&client.idp.name);
    answer(StatusCode::OK, &list_of(resources::resource_types(&base)))
}

async fn resource_type(
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let base = core.scim_base(&client.idp.name);
    match resources::resource_types(&base)
        .into_iter()
        .find(|t| t["id"].as_str() == Some(id.as_str()))
    {
        Some(found) => answer(StatusCode::OK, &found),
        None => refused(&ScimError::not_found("resource type")),
    }
}

async fn schemas(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    match resources::schemas(&core.scim_base(&client.idp.name)) {
        Ok(all) => answer(StatusCode::OK, &list_of(all)),
        Err(err) => refused(&err),
    }
}

async fn schema(
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    match resources::schemas(&core.scim_base(&client.idp.name)) {
        Ok(all) => match all
            .into_iter()
            .find(|s| s["id"].as_str() == Some(id.as_str()))
        {
            Some(found) => answer(StatusCode::OK, &found),
            None => refused(&ScimError::not_found("schema")),
        },
        Err(err) => refused(&err),
    }
}

/// `POST /.search` is not offered (ServiceProviderConfig says how to
/// list): 501, as RFC 7644 §3.4.3 allows.
async fn search(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
) -> Response {
    let _client = authenticated!(core, idp, peer, headers);
    refused(&ScimError {
        status: 501,
        scim_type: None,
        detail: "POST /.search is not offered: list with GET and a filter".into(),
    })
}

async fn list(
    core: Core,
    peer: Peer,
    idp: String,
    headers: HeaderMap,
    kind: Kind,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let Ok(Query(query)) = query else {
        return refused(&ScimError::bad(
            "invalidValue",
            "startIndex and count must be integers",
        ));
    };
    match core.scim_list(&client, kind, &query).await {
        Ok(page) => answer(StatusCode::OK, &page),
        Err(err) => refused(&err),
    }
}

async fn list_users(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    list(core, peer, idp, headers, Kind::Users, query).await
}

async fn list_groups(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    list(core, peer, idp, headers, Kind::Groups, query).await
}

/// `attributes` / `excludedAttributes` of a single read.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Projection {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

async fn get_one(
    core: Core,
    peer: Peer,
    idp: String,
    id: String,
    headers: HeaderMap,
    kind: Kind,
    projection: Projection,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    match core.scim_get(&client, kind, &id).await {
        Ok(found) => {
            let version = found["meta"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let unchanged = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == version));
            if unchanged {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            let shown = resources::project(
                found,
                projection.attributes.as_deref(),
                projection.excluded_attributes.as_deref(),
            );
            let mut response = resource(StatusCode::OK, &shown);
            if let Ok(tag) = HeaderValue::from_str(&version) {
                response.headers_mut().insert(header::ETAG, tag);
            }
            response
        }
        Err(err) => refused(&err),
    }
}

async fn get_user(
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(projection): Query<Projection>,
) -> Response {
    get_one(core, peer, idp, id, headers, Kind::Users, projection).await
}

async fn get_group(
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(projection): Query<Projection>,
) -> Response {
    get_one(core, peer, idp, id, headers, Kind::Groups, projection).await
}

async fn create(
    core: Core,
    peer: Peer,
    idp: String,
    headers: HeaderMap,
    body: axum::body::Body,
    kind: Kind,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let body = match json_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match core.scim_create(&client, kind, &body).await {
        Ok(made) => resource(StatusCode::CREATED, &made),
        Err(err) => refused(&err),
    }
}

async fn create_user(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    create(core, peer, idp, headers, body, Kind::Users).await
}

async fn create_group(
    State(core): State<Core>,
    peer: Peer,
    Path(idp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    create(core, peer, idp, headers, body, Kind::Groups).await
}

/// `PUT` (the document) or `PATCH` (operations on it) of one resource.
async fn write_resource(
    kind: Kind,
    patching: bool,
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    let body = match json_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let version = if_match(&headers);
    let written = if patching {
        core.scim_patch(&client, kind, &id, &body, version).await
    } else {
        core.scim_replace(&client, kind, &id, &body, version).await
    };
    match written {
        Ok(now) => resource(StatusCode::OK, &now),
        Err(err) => refused(&err),
    }
}

async fn delete_resource(
    kind: Kind,
    State(core): State<Core>,
    peer: Peer,
    Path((idp, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let client = authenticated!(core, idp, peer, headers);
    match core
        .scim_delete(&client, kind, &id, if_match(&headers))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => refused(&err),
    }
}
