//! Every metric authzd exports, described once: `# HELP` and `# TYPE` for
//! each family (Prometheus' own linter, `promtool check metrics`, wants
//! both), and the list a test holds the code and docs/operations.md to.

use metrics::Unit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit,
        help,
    }
}

const SECONDS: Option<Unit> = Some(Unit::Seconds);

/// authzd's own metrics (the `process_*` family comes from the process
/// collector, which describes its own).
pub const METRICS: &[Metric] = &[
    metric(
        "authzd_build_info",
        Kind::Gauge,
        None,
        "Always 1; the labels say which build runs (version, commit).",
    ),
    metric(
        "authzd_rpc_requests_total",
        Kind::Counter,
        None,
        "RPCs finished on the gRPC port, by method and status code.",
    ),
    metric(
        "authzd_rpc_duration_seconds",
        Kind::Histogram,
        SECONDS,
        "Time from an RPC's request to its response, by method and status code.",
    ),
    metric(
        "authzd_http_requests_total",
        Kind::Counter,
        None,
        "Console HTTP requests finished, by method, route template and status.",
    ),
    metric(
        "authzd_http_request_duration_seconds",
        Kind::Histogram,
        SECONDS,
        "Time from a console request to its response, by method, route template and status.",
    ),
    metric(
        "authzd_authentications_total",
        Kind::Counter,
        None,
        "Credential checks, by credential kind, outcome and reason.",
    ),
    metric(
        "authzd_rate_limited_total",
        Kind::Counter,
        None,
        "Credentials refused because their source's failed authentications exceeded the rate limit.",
    ),
    metric(
        "authzd_saml_metadata_refreshes_total",
        Kind::Counter,
        None,
        "Reads of identity providers' metadata from their addresses, by outcome.",
    ),
    metric(
        "authzd_oidc_refreshes_total",
        Kind::Counter,
        None,
        "Reads of OpenID providers' discovery documents and JWKS, by outcome.",
    ),
    metric(
        "authzd_password_hash_refused_total",
        Kind::Counter,
        None,
        "Password checks refused because the hashing queue, or the source's share of it, was full.",
    ),
    metric(
        "authzd_password_hash_wait_seconds",
        Kind::Histogram,
        SECONDS,
        "Time a password hash or verification waited for a hashing slot.",
    ),
    metric(
        "authzd_db_pool_connections",
        Kind::Gauge,
        None,
        "Connections of the database pool, by state, sampled at each health check.",
    ),
    metric(
        "authzd_db_pool_waiters",
        Kind::Gauge,
        None,
        "Database operations waiting for a pool connection, sampled at each health check.",
    ),
    metric(
        "authzd_panics_total",
        Kind::Counter,
        None,
        "Request handlers that panicked (answered INTERNAL or 500), by listener: always a bug.",
    ),
    metric(
        "authzd_open_connections",
        Kind::Gauge,
        None,
        "Connections each listener holds open; at its cap (connections.*_max) it stops accepting.",
    ),
    metric(
        "authzd_health_serving",
        Kind::Gauge,
        None,
        "1 while health is SERVING, else 0.",
    ),
    metric(
        "authzd_cache_hits_total",
        Kind::Counter,
        None,
        "Checks answered from memory, by kind of entry.",
    ),
    metric(
        "authzd_cache_misses_total",
        Kind::Counter,
        None,
        "Checks that read the database, by kind of entry (unknown_key: refused by the key-id index).",
    ),
    metric(
        "authzd_cache_evictions_total",
        Kind::Counter,
        None,
        "Cache entries evicted by change records, by kind of change.",
    ),
    metric(
        "authzd_cache_invalidation_lag_seconds",
        Kind::Histogram,
        SECONDS,
        "Time from the commit of a change to its eviction on this replica.",
    ),
    metric(
        "authzd_cache_listener_connected",
        Kind::Gauge,
        None,
        "1 while the LISTEN connection for change notifications is up (PostgreSQL).",
    ),
    metric(
        "authzd_cache_last_sync_age_seconds",
        Kind::Gauge,
        SECONDS,
        "Time since the change records were last followed.",
    ),
    metric(
        "authzd_cache_stale",
        Kind::Gauge,
        None,
        "1 while checks read through to the database because the change records are not followed.",
    ),
    metric(
        "authzd_cache_followed_seq",
        Kind::Gauge,
        None,
        "The sequence number of the last change record this replica applied.",
    ),
    metric(
        "authzd_cache_unreadable_changes_total",
        Kind::Counter,
        None,
        "Change records this replica could not read; each cleared the cache.",
    ),
    metric(
        "authzd_token_families_revoked_total",
        Kind::Counter,
        None,
        "Token families revoked, by reason.",
    ),
    metric(
        "authzd_audit_records_total",
        Kind::Counter,
        None,
        "Records this replica appended to the audit trail, by kind.",
    ),
    metric(
        "authzd_audit_dropped_total",
        Kind::Counter,
        None,
        "Refusals not recorded because the audit writer's queue was full.",
    ),
    metric(
        "authzd_ext_authz_checks_total",
        Kind::Counter,
        None,
        "Envoy Check decisions, by outcome.",
    ),
];

/// Gives every metric its help text, and sets the build's.
pub fn describe() {
    for m in METRICS {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(m.name, unit, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
    metrics::gauge!(
        "authzd_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("AUTHZD_COMMIT"),
    )
    .set(1.0);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sources(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// Every `authzd_*` name the code records is described here, and
    /// every one described is recorded somewhere and documented.
    #[test]
    fn every_metric_is_described_recorded_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut code = String::new();
        sources(&root.join("src"), &mut code);
        let mut docs = String::new();
        for page in ["docs/operations.md", "docs/cache.md"] {
            docs.push_str(&std::fs::read_to_string(root.join(page)).unwrap());
        }
        let mut recorded = Vec::new();
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for (i, _) in code.match_indices(macro_name) {
                let rest = code[i + macro_name.len()..].trim_start();
                if let Some(name) = rest.strip_prefix("\"authzd_") {
                    let end = name.find('"').unwrap();
                    recorded.push(format!("authzd_{}", &name[..end]));
                }
            }
        }
        assert!(
            recorded.len() > 20,
            "only {} recordings found",
            recorded.len()
        );
        for name in &recorded {
            assert!(
                METRICS.iter().any(|m| m.name == name),
                "{name} is recorded but not described in telemetry/catalogue.rs"
            );
        }
        for m in METRICS {
            assert!(
                recorded.iter().any(|r| r == m.name),
                "{} is described but never recorded",
                m.name
            );
            assert!(
                docs.contains(m.name),
                "{} is not in docs/operations.md",
                m.name
            );
            assert!(m.help.ends_with('.'), "{}: help is a sentence", m.name);
        }
    }
}
