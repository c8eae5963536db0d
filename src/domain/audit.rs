//! The audit trail's tamper evidence: every record is chained to the one
//! before it by a SHA-256 over all of its columns, so an edited, deleted,
//! inserted or reordered record breaks the chain where it happened, and
//! `authzd audit verify` names the first record that does not match.
//!
//! What is recorded (every admin change in its own transaction, every
//! refusal through a background writer) is issue 13's work in progress:
//! this module is the chain that every record will go through.

use sha2::{Digest, Sha256};

use super::Core;
use crate::error::Result;
use crate::store;

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
        }
    }
}

/// Walks records in sequence order from `(start_seq, start_hash)`.
pub struct Verifier {
    next_seq: i64,
    last_hash: String,
    pub checked: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            last_hash: GENESIS.to_owned(),
            checked: 0,
        }
    }

    pub fn check(&mut self, stored: &Stored) -> std::result::Result<(), Break> {
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
        self.next_seq += 1;
        self.last_hash = stored.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// The chain must end where the head says.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> std::result::Result<(), Break> {
        let seq = self.next_seq - 1;
        if seq != head_seq || self.last_hash != head_hash {
            return Err(Break::Head { seq, head_seq });
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
        head_seq: i64,
        head_hash: String,
    },
    Broken(Break),
}

impl Core {
    /// Walks the whole chain, in pages, and reports the first break.
    pub async fn verify_audit(&self) -> Result<Verified> {
        let mut verifier = Verifier::new();
        let mut after = 0;
        loop {
            let page = store::audit::page(self.db(), after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for stored in &page {
                if let Err(broken) = verifier.check(stored) {
                    return Ok(Verified::Broken(broken));
                }
            }
        }
        let (head_seq, head_hash) = store::audit::head(self.db()).await?;
        Ok(match verifier.finish(head_seq, &head_hash) {
            Ok(()) => Verified::Intact {
                records: verifier.checked,
                head_seq,
                head_hash,
            },
            Err(broken) => Verified::Broken(broken),
        })
    }

    /// Appends records to the chain in one transaction of their own.
    pub async fn append_audit(&self, records: &[Record]) -> Result<()> {
        self.write_with(async |txn| store::audit::append(txn, records).await)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
