//! The audit trail's tamper evidence: every record is chained to the one
//! before it by a SHA-256 over all of its columns, so an edited, deleted,
//! inserted or reordered record breaks the chain where it happened, and
//! `authzd audit verify` names the first record that does not match.
//!
//! Two kinds of record go into the one chain:
//! - a **change**: every admin write that succeeds, appended in the same
//!   transaction as the change (`Write::record`), so there is no change
//!   without its record and a record that cannot be written fails the
//!   change;
//! - a **refusal**: a refused credential or a refused action, queued to a
//!   bounded background writer (`Auditor`) that appends them in batches,
//!   so a check never waits on the audit trail. A full queue drops and
//!   counts what it dropped.
//!
//! A purge of old records leaves a `checkpoint` record naming the last
//! record it removed and its hash, so what remains still verifies.

mod tally;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

pub use crate::model::audit::{Filter, GENESIS, Record, Stored, hash};

use super::Core;
use super::authn::sources::Source;
use super::caller::Caller;
use super::model::{CredentialKind, Principal};
use super::page::{Page, PageRequest};
use crate::error::{AuthFailure, Error, Result};
use crate::store;

/// Where a chain stops matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// A record's own hash does not match its columns (it was edited).
    Edited { seq: i64 },
    /// A record does not link to the one before it (one was deleted,
    /// inserted or moved).
    Unlinked { seq: i64 },
    /// Sequence numbers skip or repeat.
    Gap { expected: i64, found: i64 },
    /// The last record is not the head the appender recorded (records at
    /// the end were removed, or the head was rewritten).
    Head { seq: i64, head_seq: i64 },
    /// The chain starts after record 1 and no checkpoint record of a
    /// purge vouches for that start (records at the start were removed).
    Purged { first: i64 },
    /// A record an anchor from the log names has another hash, or the
    /// chain ends before it.
    Anchor { seq: i64 },
    /// The head row (`audit_head`) is gone: nothing says where the chain
    /// ends, and appends stop until it is restored.
    HeadMissing,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Edited { seq } => {
                write!(f, "record {seq}: its hash does not match its contents")
            }
            Break::Unlinked { seq } => {
                write!(f, "record {seq}: it does not link to the record before it")
            }
            Break::Gap { expected, found } => {
                write!(
                    f,
                    "record {expected} is missing (found {found} in its place)"
                )
            }
            Break::Head { seq, head_seq } => write!(
                f,
                "the chain ends at record {seq} but its head says {head_seq}"
            ),
            Break::Anchor { seq } => write!(
                f,
                "record {seq} does not match the anchor: its hash differs, or the chain no longer reaches it"
            ),
            Break::HeadMissing => write!(
                f,
                "the chain's head (the audit_head row) is missing: it was deleted, so nothing says where the chain ends"
            ),
            Break::Purged { first } => write!(
                f,
                "the chain starts at record {first} and no retention checkpoint accounts for the records before it"
            ),
        }
    }
}

/// Walks records in sequence order. A chain whose first records were
/// purged starts where they end: the checkpoint record the purge appended
/// must vouch for that start (`Break::Purged` otherwise).
pub struct Verifier {
    next_seq: i64,
    last_hash: String,
    /// Sequence numbers and hashes from the log (`audit chain head`
    /// lines) that the chain must still hold, unless purged.
    anchors: std::collections::BTreeMap<i64, String>,
    pub first_seq: Option<i64>,
    /// Where a purged chain starts: the last purged record and its hash,
    /// and whether a checkpoint record has vouched for them.
    start: Option<(i64, String, bool)>,
    pub checked: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            last_hash: GENESIS.to_owned(),
            anchors: std::collections::BTreeMap::new(),
            first_seq: None,
            start: None,
            checked: 0,
        }
    }

    /// Also requires record `seq` to have `hash`, if it was not purged.
    pub fn anchor(&mut self, seq: i64, hash: String) {
        self.anchors.insert(seq, hash);
    }

    pub fn check(&mut self, stored: &Stored) -> std::result::Result<(), Break> {
        if self.checked == 0 {
            self.first_seq = Some(stored.seq);
        }
        if self.checked == 0 && stored.seq > 1 {
            // Purged up to here: taken on trust until a checkpoint confirms.
            self.next_seq = stored.seq;
            self.last_hash = stored.prev_hash.clone();
            self.start = Some((stored.seq - 1, stored.prev_hash.clone(), false));
        }
        if stored.seq != self.next_seq {
            return Err(Break::Gap {
                expected: self.next_seq,
                found: stored.seq,
            });
        }
        if stored.prev_hash != self.last_hash {
            return Err(Break::Unlinked { seq: stored.seq });
        }
        if hash(stored.seq, &stored.record, &stored.prev_hash) != stored.hash {
            return Err(Break::Edited { seq: stored.seq });
        }
        if let Some(anchored) = self.anchors.get(&stored.seq)
            && *anchored != stored.hash
        {
            return Err(Break::Anchor { seq: stored.seq });
        }
        if stored.record.kind == CHECKPOINT
            && let Some((through, hash, vouched)) = &mut self.start
            && let Some(purge) = Purge::of(&stored.record)
            && purge.through == *through
            && purge.hash == *hash
        {
            *vouched = true;
        }
        self.next_seq += 1;
        self.last_hash = stored.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// The chain must end where the head says.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> std::result::Result<(), Break> {
        if let Some((through, _, false)) = &self.start {
            return Err(Break::Purged { first: through + 1 });
        }
        let seq = self.next_seq - 1;
        if seq != head_seq || self.last_hash != head_hash {
            return Err(Break::Head { seq, head_seq });
        }
        // An anchor past the end: the chain was cut back and rewritten.
        if let Some((&anchored, _)) = self.anchors.range(seq + 1..).next() {
            return Err(Break::Anchor { seq: anchored });
        }
        Ok(())
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of `Core::verify_audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Intact {
        records: u64,
        /// The oldest record left (after purges); 0 for an empty chain.
        first_seq: i64,
        head_seq: i64,
        head_hash: String,
    },
    Broken(Break),
}

/// The kinds of record.
pub const CHANGE: &str = "change";
pub const REFUSAL: &str = "refusal";
pub const CHECKPOINT: &str = "checkpoint";

/// What a retention purge removed, as its checkpoint record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// The last record removed, and its hash.
    pub through: i64,
    pub hash: String,
}

impl Purge {
    fn of(record: &Record) -> Option<Self> {
        let detail: Value = serde_json::from_str(&record.detail).ok()?;
        Some(Self {
            through: detail.get("purged_through")?.as_i64()?,
            hash: detail.get("hash")?.as_str()?.to_owned(),
        })
    }
}

/// Who made a change: the caller of an RPC, authzd itself (the first
/// start's bootstrap, a break-glass command, a lockout), or an identity
/// provider through a sign-in or provisioning protocol, where nobody is
/// signed in yet (a user created just in time, a SCIM write).
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    Caller(&'a Caller),
    Local(&'static str),
    Federation {
        /// `saml`, `oidc`, `scim`.
        protocol: &'static str,
        /// The identity provider's name.
        idp: &'a str,
    },
}

fn credential_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Password => "password",
        CredentialKind::ApiKey => "api_key",
        CredentialKind::Token => "token",
    }
}

fn principal_detail(principal: &Principal) -> Map<String, Value> {
    let mut actor = Map::new();
    actor.insert("user_id".into(), principal.user.id.to_string().into());
    actor.insert("username".into(), principal.username().into());
    actor.insert("account".into(), principal.account().into());
    actor.insert(
        "credential".into(),
        credential_name(principal.credential).into(),
    );
    if let Some(key) = &principal.api_key {
        actor.insert("api_key_id".into(), key.key_id.clone().into());
    }
    if let Some(token) = &principal.token_id {
        actor.insert("token_id".into(), token.clone().into());
    }
    actor
}

impl Actor<'_> {
    fn username(&self) -> Option<String> {
        match self {
            Actor::Caller(caller) => Some(caller.username().to_owned()),
            // Provisioning acts as the provider's client, named so the
            // trail can be searched for everything it did.
            Actor::Federation {
                protocol: "scim",
                idp,
            } => Some(format!("scim:{idp}")),
            Actor::Local(_) | Actor::Federation { .. } => None,
        }
    }

    fn detail(&self, detail: &mut Map<String, Value>, rpc: Option<&crate::telemetry::Rpc>) {
        match self {
            Actor::Caller(caller) => {
                let mut actor = principal_detail(caller);
                if let Some(context) = &caller.account_context {
                    actor.insert("account_context".into(), context.clone().into());
                }
                detail.insert("actor".into(), actor.into());
                let origin = &caller.origin;
                let mut source = Map::new();
                if let Some(peer) = origin.peer.or(rpc.and_then(|r| r.peer)) {
                    source.insert("peer".into(), peer.to_string().into());
                }
                if let Some(subject) = &origin.client_subject {
                    source.insert("client_subject".into(), subject.clone().into());
                }
                detail.insert("source".into(), source.into());
                if let Some(id) = origin
                    .request_id
                    .clone()
                    .or(rpc.map(|r| r.request_id.clone()))
                {
                    detail.insert("request_id".into(), id.into());
                }
            }
            Actor::Local(_) | Actor::Federation { .. } => {
                let actor = match self {
                    Actor::Federation { protocol, idp } => {
                        json!({ "federation": { "protocol": protocol, "idp": idp } })
                    }
                    Actor::Local(name) => json!({ "local": name }),
                    Actor::Caller(_) => Value::Null,
                };
                detail.insert("actor".into(), actor);
                if let Some(rpc) = rpc {
                    if let Some(peer) = rpc.peer {
                        detail.insert("source".into(), json!({ "peer": peer.to_string() }));
                    }
                    detail.insert("request_id".into(), rpc.request_id.clone().into());
                }
            }
        }
    }
}

/// One change as the audit trail records it: its target and a small diff
/// of what changed. Never a password, key value, token or hash.
#[derive(Debug, Clone)]
pub struct Change {
    op: &'static str,
    kind: &'static str,
    name: String,
    account: Option<String>,
    id: Option<String>,
    changes: Map<String, Value>,
}

impl Change {
    /// `op` (`create`, `update`, `delete`, …) on the `kind` named `name`.
    pub fn new(op: &'static str, kind: &'static str, name: impl Into<String>) -> Self {
        Self {
            op,
            kind,
            name: name.into(),
            account: None,
            id: None,
            changes: Map::new(),
        }
    }

    /// The account the target belongs to (its own name, for an account).
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    pub fn id(mut self, id: impl ToString) -> Self {
        self.id = Some(id.to_string());
        self
    }

    /// A field's new value.
    pub fn to(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.changes
            .insert(field.to_owned(), json!({ "to": value.into() }));
        self
    }

    /// A field's old and new values.
    pub fn from_to(mut self, field: &str, from: impl Into<Value>, to: impl Into<Value>) -> Self {
        self.changes.insert(
            field.to_owned(),
            json!({ "from": from.into(), "to": to.into() }),
        );
        self
    }

    /// That a secret changed, never its value.
    pub fn secret(mut self, field: &str) -> Self {
        self.changes
            .insert(field.to_owned(), json!({ "changed": true }));
        self
    }

    pub(crate) fn into_record(self, at_ms: i64, actor: Actor<'_>) -> Record {
        let rpc = crate::telemetry::current_rpc();
        let mut detail = Map::new();
        detail.insert("op".into(), self.op.into());
        actor.detail(&mut detail, rpc.as_ref());
        let mut target = Map::new();
        target.insert("kind".into(), self.kind.into());
        if let Some(id) = &self.id {
            target.insert("id".into(), id.clone().into());
        }
        target.insert("name".into(), self.name.clone().into());
        if let Some(account) = &self.account {
            target.insert("account".into(), account.clone().into());
        }
        detail.insert("target".into(), target.into());
        detail.insert("changes".into(), self.changes.into());
        Record {
            at_ms,
            kind: CHANGE.to_owned(),
            rpc: rpc_name(rpc.as_ref(), actor),
            outcome: "ok".to_owned(),
            actor_username: actor.username(),
            target_kind: Some(self.kind.to_owned()),
            target_name: Some(self.name),
            target_account: self.account,
            detail: Value::Object(detail).to_string(),
        }
    }
}

/// The RPC a record came from; a local actor outside any RPC names itself.
fn rpc_name(rpc: Option<&crate::telemetry::Rpc>, actor: Actor<'_>) -> String {
    match (rpc, actor) {
        (Some(rpc), _) => rpc.method.to_owned(),
        (None, Actor::Local(name)) => name.to_owned(),
        (None, Actor::Federation { protocol, .. }) => protocol.to_owned(),
        (None, Actor::Caller(_)) => "local".to_owned(),
    }
}

/// A refused credential or action, before it is queued.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The claimed username, or the principal refused an action.
    pub username: Option<String>,
    pub reason: &'static str,
    pub source: Option<Source>,
    pub credential: Option<&'static str>,
    pub api_key_id: Option<String>,
    /// For a refused action: what was refused, and where.
    pub action: Option<String>,
    pub target_account: Option<String>,
    pub target_user: Option<String>,
    pub principal: Option<Map<String, Value>>,
    /// For a request the HTTP gate refused without an action: the
    /// operation (or the unknown route) refused.
    pub operation: Option<String>,
}

impl Refusal {
    /// A credential refused for `reason`.
    pub fn credential(reason: AuthFailure, source: Source, credential: &'static str) -> Self {
        Self::credential_for(reason.as_str(), source, credential)
    }

    /// A credential refused for a reason that is no `AuthFailure`
    /// (`rate_limited`, `busy`).
    pub fn credential_for(reason: &'static str, source: Source, credential: &'static str) -> Self {
        Self {
            username: None,
            reason,
            source: Some(source),
            credential: Some(credential),
            api_key_id: None,
            action: None,
            target_account: None,
            target_user: None,
            principal: None,
            operation: None,
        }
    }

    /// An authenticated principal refused `action` in `account`.
    pub fn action(principal: &Principal, action: &str, account: Option<&str>) -> Self {
        Self {
            username: Some(principal.username().to_owned()),
            reason: "permission_denied",
            source: None,
            credential: Some(credential_name(principal.credential)),
            api_key_id: None,
            action: Some(action.to_owned()),
            target_account: account.map(str::to_owned),
            target_user: None,
            principal: Some(principal_detail(principal)),
            operation: None,
        }
    }

    /// An authenticated principal refused an HTTP operation by the gate
    /// for a rule that names no action (administrators only, oneself
    /// only, never through the gate, no such route).
    pub fn operation(principal: &Principal, operation: impl Into<String>) -> Self {
        Self {
            username: Some(principal.username().to_owned()),
            reason: "permission_denied",
            source: None,
            credential: Some(credential_name(principal.credential)),
            api_key_id: None,
            action: None,
            target_account: None,
            target_user: None,
            principal: Some(principal_detail(principal)),
            operation: Some(operation.into()),
        }
    }

    fn into_record(self, at_ms: i64) -> Record {
        let rpc = crate::telemetry::current_rpc();
        let mut detail = Map::new();
        if let Some(actor) = self.principal {
            detail.insert("actor".into(), actor.into());
        } else if let Some(username) = &self.username {
            detail.insert("claimed_username".into(), username.clone().into());
        }
        if let Some(credential) = self.credential {
            detail.insert("credential".into(), credential.into());
        }
        if let Some(id) = self.api_key_id {
            detail.insert("api_key_id".into(), id.into());
        }
        let mut source = Map::new();
        if let Some(s) = self.source {
            source.insert("address".into(), s.to_string().into());
        }
        if let Some(peer) = rpc.as_ref().and_then(|r| r.peer) {
            source.insert("peer".into(), peer.to_string().into());
        }
        detail.insert("source".into(), source.into());
        if let Some(rpc) = &rpc {
            detail.insert("request_id".into(), rpc.request_id.clone().into());
        }
        if let Some(action) = &self.action {
            detail.insert("action".into(), action.clone().into());
        }
        if let Some(operation) = &self.operation {
            detail.insert("operation".into(), operation.clone().into());
        }
        let (target_kind, target_name) = match (&self.target_user, &self.target_account) {
            (Some(user), _) => (Some("user"), Some(user.clone())),
            (None, Some(account)) => (Some("account"), Some(account.clone())),
            _ => (None, None),
        };
        Record {
            at_ms,
            kind: REFUSAL.to_owned(),
            rpc: rpc.map_or_else(|| "local".to_owned(), |r| r.method.to_owned()),
            outcome: self.reason.to_owned(),
            actor_username: self.username,
            target_kind: target_kind.map(str::to_owned),
            target_name,
            target_account: self.target_account,
            detail: Value::Object(detail).to_string(),
        }
    }
}

/// The `audit.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct AuditSettings {
    /// Refusals waiting for the background writer; more are dropped.
    pub queue: usize,
    /// Refusals appended per transaction.
    pub batch: usize,
    pub retention: Option<Duration>,
    /// The interval over which one source's refusal records are bounded.
    pub refusal_interval: Duration,
    /// Refusal records one source may cause per interval; past it they
    /// are counted (`tally`).
    pub refusals_per_source: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            queue: 10_000,
            batch: 500,
            retention: Some(Duration::from_secs(365 * 86_400)),
            refusal_interval: Duration::from_secs(10),
            refusals_per_source: 20,
        }
    }
}

/// The refusal queue: bounded, never waited on.
pub struct Auditor {
    sender: mpsc::Sender<Record>,
    receiver: Mutex<Option<mpsc::Receiver<Record>>>,
    dropped: AtomicU64,
    tally: Mutex<tally::Tally>,
    settings: AuditSettings,
}

impl Auditor {
    pub fn new(settings: AuditSettings) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue.max(1));
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            dropped: AtomicU64::new(0),
            tally: Mutex::new(tally::Tally::default()),
            settings,
        }
    }

    /// Whether this refusal gets a record of its own (else it is counted
    /// into its source's record for the interval).
    fn admit(&self, refusal: &Refusal, at_ms: i64) -> bool {
        let source = refusal
            .source
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        match self.tally.lock() {
            Ok(mut tally) => tally.admit(
                self.settings.refusals_per_source,
                &source,
                refusal.reason,
                refusal.credential,
                at_ms,
            ),
            // A poisoned tally must not silence refusals.
            Err(_) => true,
        }
    }

    /// The interval's counted refusals, as records.
    fn counted(&self, at_ms: i64) -> Vec<Record> {
        self.tally
            .lock()
            .map(|mut tally| tally.take(at_ms))
            .unwrap_or_default()
    }

    /// Refusals dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn offer(&self, record: Record) {
        if self.sender.try_send(record).is_err() {
            self.lost(1);
        }
    }

    fn lost(&self, records: usize) {
        let records = records as u64;
        self.dropped.fetch_add(records, Ordering::Relaxed);
        metrics::counter!("authzd_audit_dropped_total").increment(records);
    }
}

/// Writes one record on the `audit` log target: with `log.format: json`,
/// one JSON line per record for a log shipper (a SIEM), its columns as
/// fields and its detail as JSON text; its hash makes the line checkable
/// against the chain.
fn emit(stored: &Stored) {
    let r = &stored.record;
    tracing::info!(
        target: "audit",
        seq = stored.seq,
        at_ms = r.at_ms,
        kind = r.kind,
        rpc = r.rpc,
        outcome = r.outcome,
        actor = r.actor_username,
        target_kind = r.target_kind,
        target_name = r.target_name,
        target_account = r.target_account,
        detail = r.detail,
        hash = stored.hash,
        "audit record"
    );
    metrics::counter!("authzd_audit_records_total", "kind" => kind_label(&r.kind)).increment(1);
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        CHANGE => CHANGE,
        REFUSAL => REFUSAL,
        _ => CHECKPOINT,
    }
}

pub(super) fn emit_all(stored: &[Stored]) {
    stored.iter().for_each(emit);
}

impl Core {
    /// Walks the whole chain, in pages, and reports the first break.
    pub async fn verify_audit(&self) -> Result<Verified> {
        self.verify_audit_with(&[]).await
    }

    /// `verify_audit`, also requiring each anchor (a sequence number and
    /// hash the log holds) to be in the chain, unless purged. The walk
    /// reads one snapshot, head first, so appends and purges running
    /// meanwhile are not mistaken for breaks.
    pub async fn verify_audit_with(&self, anchors: &[(i64, String)]) -> Result<Verified> {
        use sea_orm::TransactionTrait;
        let txn = self
            .db()
            .begin_with_config(
                Some(sea_orm::IsolationLevel::RepeatableRead),
                Some(sea_orm::AccessMode::ReadOnly),
            )
            .await
            .map_err(store::classify)?;
        let mut verifier = Verifier::new();
        for (seq, hash) in anchors {
            verifier.anchor(*seq, hash.clone());
        }
        let Some((head_seq, head_hash)) = store::audit::head(&txn).await? else {
            return Ok(Verified::Broken(Break::HeadMissing));
        };
        let mut after = 0;
        loop {
            let page = store::audit::page(&txn, after, head_seq, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for stored in &page {
                if let Err(broken) = verifier.check(stored) {
                    return Ok(Verified::Broken(broken));
                }
            }
        }
        txn.commit().await.map_err(store::classify)?;
        Ok(match verifier.finish(head_seq, &head_hash) {
            Ok(()) => Verified::Intact {
                records: verifier.checked,
                first_seq: verifier.first_seq.unwrap_or(0),
                head_seq,
                head_hash,
            },
            Err(broken) => Verified::Broken(broken),
        })
    }

    /// Appends records to the chain in one transaction of their own.
    pub async fn append_audit(&self, records: &[Record]) -> Result<()> {
        let mut write = self.write().await?;
        for record in records {
            write.push(record.clone());
        }
        write.commit().await
    }

    /// Queues a refusal for the background writer; never waits.
    pub fn refused(&self, refusal: Refusal) {
        let at_ms = self.now().timestamp_millis();
        if self.auditor().admit(&refusal, at_ms) {
            self.auditor().offer(refusal.into_record(at_ms));
        }
    }

    /// Appends queued refusals in batches until `stop`, then what is left.
    pub async fn run_audit_writer(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(mut receiver) = self
            .auditor()
            .receiver
            .lock()
            .ok()
            .and_then(|mut r| r.take())
        else {
            return;
        };
        let batch = self.auditor().settings.batch.max(1);
        let mut pending: Vec<Record> = Vec::new();
        let mut reported = 0;
        let mut interval = tokio::time::interval(self.auditor().settings.refusal_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_report = tokio::time::Instant::now();
        loop {
            let open = tokio::select! {
                n = receiver.recv_many(&mut pending, batch) => n > 0,
                _ = stop.cancelled() => false,
                // The interval's counted refusals, and the drop report,
                // also while nothing arrives.
                _ = interval.tick() => {
                    pending.extend(self.auditor().counted(self.now().timestamp_millis()));
                    if since_report.elapsed() >= Duration::from_secs(10) {
                        since_report = tokio::time::Instant::now();
                        reported = self.report_drops(reported);
                    }
                    if pending.is_empty() {
                        continue;
                    }
                    true
                }
            };
            if !open {
                // The last refusals, once: what cannot be written now is
                // counted as dropped.
                while let Ok(record) = receiver.try_recv() {
                    pending.push(record);
                }
                pending.extend(self.auditor().counted(self.now().timestamp_millis()));
                let mut left = pending.len();
                for chunk in pending.chunks(batch) {
                    if let Err(err) = self.append_audit(chunk).await {
                        tracing::warn!(error = %err, records = left, "audit refusals lost at shutdown");
                        self.auditor().lost(left);
                        break;
                    }
                    left -= chunk.len();
                }
                self.report_drops(reported);
                return;
            }
            // While the database is away the same batch is retried and the
            // queue fills behind it: refusals are then dropped and counted,
            // and no check waits.
            loop {
                match self.append_audit(&pending).await {
                    Ok(()) => {
                        pending.clear();
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, records = pending.len(), "cannot write audit refusals; retrying");
                        reported = self.report_drops(reported);
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }

    /// Logs the refusals dropped since the last report; returns the total.
    fn report_drops(&self, reported: u64) -> u64 {
        let dropped = self.auditor().dropped();
        if dropped > reported {
            tracing::warn!(
                dropped = dropped - reported,
                total = dropped,
                "audit refusals dropped: the writer's queue was full"
            );
        }
        dropped
    }

    /// Records, newest first, that `caller` may read.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        mut filter: Filter,
        page: &PageRequest,
    ) -> Result<Page<Stored>> {
        use super::actions::LIST_AUDIT_EVENTS;
        // Global administrators read everything; anyone else reads one
        // account's events, where they hold listAuditEvents.
        let everything = caller.is_global_admin()
            && filter.target_account.is_none()
            && caller.account_context.is_none();
        let mut from = None;
        if !everything {
            let account = caller.target_account(
                "target_account",
                filter.target_account.as_deref().unwrap_or_default(),
            )?;
            self.require(caller, LIST_AUDIT_EVENTS, Some(&account))
                .await?;
            // A deleted account's name can be taken again: its new users
            // read from the new account's creation record on, not the old
            // one's history (by sequence, not by time, which two tenants
            // can share to the millisecond).
            if !caller.is_global_admin() {
                from = store::audit::account_created_seq(self.db(), &account).await?;
            }
            filter.target_account = Some(account);
        }
        let before = match &page.after {
            None => None,
            Some(key) => Some(key.first().and_then(|k| k.parse::<i64>().ok()).ok_or_else(
                || Error::invalid("page_token", "is not a token this listing returned"),
            )?),
        };
        let mut items =
            store::audit::list(self.db(), &filter, (from, before), page.limit + 1).await?;
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut next_page_token = String::new();
        if items.len() > limit {
            items.truncate(limit);
            if let Some(last) = items.last() {
                next_page_token = super::page::encode(&[&last.seq.to_string()]);
            }
        }
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Logs the chain's head on the `audit` target, as an anchor outside
    /// the database: a rewrite of the table cannot match it.
    pub async fn log_audit_checkpoint(&self) -> Result<(i64, String)> {
        let (seq, hash) = store::audit::head(self.db())
            .await?
            .ok_or_else(|| Error::internal("the audit chain's head (audit_head) is missing"))?;
        tracing::info!(target: "audit", seq, hash, "audit chain head");
        Ok((seq, hash))
    }

    /// Removes records older than the retention, leaving a checkpoint
    /// record that names the last one removed and its hash. Returns how
    /// many were removed.
    pub async fn purge_audit(&self) -> Result<u64> {
        let Some(retention) = self.auditor().settings.retention else {
            return Ok(0);
        };
        let now_ms = self.now().timestamp_millis();
        let cutoff = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut write = self.write().await?;
        let Some((through, hash, count)) = store::audit::purgeable(write.db(), cutoff).await?
        else {
            return Ok(0);
        };
        let days = retention.as_secs() / 86_400;
        let record = Record {
            at_ms: now_ms,
            kind: CHECKPOINT.to_owned(),
            rpc: "retention".to_owned(),
            outcome: "ok".to_owned(),
            actor_username: None,
            target_kind: None,
            target_name: None,
            target_account: None,
            detail: json!({ "purged_through": through, "hash": hash, "purged": count, "retention_days": days })
                .to_string(),
        };
        write.push(record);
        store::audit::delete_through(write.db(), through).await?;
        write.commit().await?;
        tracing::info!(
            purged = count,
            through,
            "audit records past their retention purged"
        );
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_federation_actor_names_its_protocol_and_idp_and_no_user() {
        let change = Change::new("create", "user", "alice").account("acme");
        let record = change.into_record(
            0,
            Actor::Federation {
                protocol: "saml",
                idp: "okta",
            },
        );
        assert_eq!(record.actor_username, None);
        assert_eq!(record.rpc, "saml");
        let detail: Value = serde_json::from_str(&record.detail).unwrap();
        assert_eq!(
            detail["actor"],
            json!({ "federation": { "protocol": "saml", "idp": "okta" } })
        );
    }

    fn record(n: i64) -> Record {
        Record {
            at_ms: 1_700_000_000_000 + n,
            kind: "change".into(),
            rpc: "CreateAccount".into(),
            outcome: "ok".into(),
            actor_username: Some("admin".into()),
            target_kind: Some("account".into()),
            target_name: Some(format!("acct-{n}")),
            target_account: None,
            detail: format!("{{\"n\":{n}}}"),
        }
    }

    fn chain(n: i64) -> Vec<Stored> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let r = record(seq);
                let h = hash(seq, &r, &prev);
                let s = Stored {
                    seq,
                    record: r,
                    prev_hash: prev.clone(),
                    hash: h.clone(),
                };
                prev = h;
                s
            })
            .collect()
    }

    fn verify(rows: &[Stored]) -> std::result::Result<(), Break> {
        let mut v = Verifier::new();
        for r in rows {
            v.check(r)?;
        }
        let last = rows
            .last()
            .map_or((0, GENESIS.to_owned()), |r| (r.seq, r.hash.clone()));
        v.finish(last.0, &last.1)
    }

    #[test]
    fn a_null_is_not_an_empty_string() {
        let mut a = record(1);
        let mut b = record(1);
        a.target_account = None;
        b.target_account = Some(String::new());
        assert_ne!(hash(1, &a, GENESIS), hash(1, &b, GENESIS));
    }

    #[test]
    fn edits_deletions_and_swaps_break_the_chain_where_they_happen() {
        let rows = chain(5);
        assert_eq!(verify(&rows), Ok(()));
        let mut edited = rows.clone();
        edited[2].record.outcome = "refused".into();
        assert_eq!(verify(&edited), Err(Break::Edited { seq: 3 }));
        let mut deleted = rows.clone();
        deleted.remove(2);
        assert_eq!(
            verify(&deleted),
            Err(Break::Gap {
                expected: 3,
                found: 4
            })
        );
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        (swapped[1].seq, swapped[2].seq) = (2, 3);
        assert_eq!(verify(&swapped), Err(Break::Unlinked { seq: 2 }));
    }
}
