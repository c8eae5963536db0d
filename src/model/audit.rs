//! The audit chain's records, as the domain writes them and the store
//! keeps them: each record hashed with the one before it.

use sha2::{Digest, Sha256};

/// The link before the first record (`audit_head` starts there).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub at_ms: i64,
    /// `change`, `refusal` or `checkpoint`.
    pub kind: String,
    pub rpc: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
    pub actor_username: Option<String>,
    /// `account`, `user`, `api_key`, `group`, `role_member`, …
    pub target_kind: Option<String>,
    pub target_name: Option<String>,
    pub target_account: Option<String>,
    /// A JSON document: the actor, source, target and diff. Never a secret.
    pub detail: String,
}

/// A record in its place: its sequence number and the two links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: i64,
    pub record: Record,
    pub prev_hash: String,
    pub hash: String,
}

/// The SHA-256 (hex) of a record at `seq` after `prev_hash`: each column
/// length-prefixed, so no two different rows encode alike (a NULL is not
/// an empty string).
pub fn hash(seq: i64, record: &Record, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |value: Option<&str>| match value {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
    };
    field(Some(&seq.to_string()));
    field(Some(&record.at_ms.to_string()));
    field(Some(&record.kind));
    field(Some(&record.rpc));
    field(Some(&record.outcome));
    field(record.actor_username.as_deref());
    field(record.target_kind.as_deref());
    field(record.target_name.as_deref());
    field(record.target_account.as_deref());
    field(Some(&record.detail));
    field(Some(prev_hash));
    format!("{:x}", h.finalize())
}

/// What a listing may filter on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub actor: Option<String>,
    pub target_account: Option<String>,
    pub target_name: Option<String>,
    pub target_kind: Option<String>,
    pub rpc: Option<String>,
    pub outcome: Option<String>,
    pub kind: Option<String>,
}
