use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::{timestamp, timestamp_in};
use crate::domain::Core;
use crate::domain::audit::{Filter, Stored};
use crate::domain::page::PageRequest;
use crate::pb;
use crate::pb::audit_service_server::AuditService;

pub struct AuditApi {
    core: Core,
}

impl AuditApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// A JSON value as a protobuf `Value`, so grpcurl shows the detail as JSON.
fn value(json: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(structure(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn structure(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, value(v))).collect(),
    }
}

fn event(stored: Stored) -> pb::AuditEvent {
    let r = stored.record;
    let detail = match serde_json::from_str(&r.detail) {
        Ok(serde_json::Value::Object(map)) => Some(structure(map)),
        _ => None,
    };
    pb::AuditEvent {
        seq: stored.seq,
        time: chrono::DateTime::from_timestamp_millis(r.at_ms).and_then(timestamp),
        kind: r.kind,
        rpc: r.rpc,
        outcome: r.outcome,
        actor: r.actor_username.unwrap_or_default(),
        target_kind: r.target_kind.unwrap_or_default(),
        target: r.target_name.unwrap_or_default(),
        target_account: r.target_account.unwrap_or_default(),
        detail,
        hash: stored.hash,
        prev_hash: stored.prev_hash,
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let millis = |field: &str, t: Option<prost_types::Timestamp>| {
            t.map(|t| timestamp_in(field, Some(t)).map(|t| t.timestamp_millis()))
                .transpose()
        };
        let filter = Filter {
            since_ms: millis("since", req.since)?,
            until_ms: millis("until", req.until)?,
            actor: optional(req.actor),
            target_account: optional(req.target_account),
            target_name: optional(req.target),
            target_kind: optional(req.target_kind),
            rpc: optional(req.rpc),
            outcome: optional(req.outcome),
            kind: optional(req.kind),
        };
        let page = self.core.list_audit_events(&caller, filter, &page).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.items.into_iter().map(event).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
