//! Refusals counted instead of recorded one by one. A flood from one
//! source (a guesser, a misconfigured client, a botnet node) would
//! otherwise write a record per request (hundreds a second, kept for a
//! year) and, once the writer fell behind, push out the refusals that
//! matter. So within each interval a source may cause `per_source`
//! records; past that, and for every rate-limited refusal (the limit has
//! already said what happened), its refusals are counted: one record per
//! source and reason per interval, with the count and the first and last
//! time. Other sources are unaffected: their refusals are recorded at once.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{REFUSAL, Record};

/// Sources tracked in one interval; beyond it, the rest share one tally
/// (`other`), so a botnet of fresh addresses cannot grow this without bound.
const MAX_SOURCES: usize = 10_000;
/// The reason whose refusals are always counted.
const RATE_LIMITED: &str = "rate_limited";
const OTHER: &str = "other";

#[derive(Debug)]
struct Counted {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    credential: Option<&'static str>,
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Records each source caused this interval.
    recorded: HashMap<String, u32>,
    counted: HashMap<(String, &'static str), Counted>,
}

impl Tally {
    /// Whether a refusal from `source` for `reason` gets a record of its
    /// own; if not, it is counted.
    pub fn admit(
        &mut self,
        per_source: u32,
        source: &str,
        reason: &'static str,
        credential: Option<&'static str>,
        at_ms: i64,
    ) -> bool {
        let known = self.recorded.contains_key(source)
            || self.counted.contains_key(&(source.to_owned(), reason));
        let source = if known || self.recorded.len() < MAX_SOURCES {
            source
        } else {
            OTHER
        };
        if reason != RATE_LIMITED {
            let recorded = self.recorded.entry(source.to_owned()).or_default();
            if *recorded < per_source {
                *recorded += 1;
                return true;
            }
        }
        let counted = self
            .counted
            .entry((source.to_owned(), reason))
            .or_insert(Counted {
                count: 0,
                first_ms: at_ms,
                last_ms: at_ms,
                credential,
            });
        counted.count += 1;
        counted.last_ms = at_ms;
        false
    }

    /// The interval's counts as records, and a fresh interval.
    pub fn take(&mut self, at_ms: i64) -> Vec<Record> {
        self.recorded.clear();
        let mut records: Vec<Record> = self
            .counted
            .drain()
            .map(|((source, reason), counted)| {
                let mut detail = Map::new();
                let mut from = Map::new();
                from.insert("address".into(), source.into());
                detail.insert("source".into(), from.into());
                if let Some(credential) = counted.credential {
                    detail.insert("credential".into(), credential.into());
                }
                detail.insert("count".into(), counted.count.into());
                detail.insert("first_at_ms".into(), counted.first_ms.into());
                detail.insert("last_at_ms".into(), counted.last_ms.into());
                Record {
                    at_ms,
                    kind: REFUSAL.to_owned(),
                    rpc: "counted".to_owned(),
                    outcome: reason.to_owned(),
                    actor_username: None,
                    target_kind: None,
                    target_name: None,
                    target_account: None,
                    detail: Value::Object(detail).to_string(),
                }
            })
            .collect();
        // One order, whatever the map's.
        records.sort_by(|a, b| a.detail.cmp(&b.detail).then(a.outcome.cmp(&b.outcome)));
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(records: &[Record]) -> Vec<(String, u64)> {
        records
            .iter()
            .map(|r| {
                let detail: Value = serde_json::from_str(&r.detail).unwrap();
                (
                    format!("{} {}", detail["source"]["address"], r.outcome),
                    detail["count"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_source_past_its_share_is_counted_and_rate_limits_always_are() {
        let mut tally = Tally::default();
        let mut own = 0;
        for i in 0..1000 {
            own += usize::from(tally.admit(3, "203.0.113.9", "unknown_key", Some("api_key"), i));
        }
        for i in 0..50 {
            assert!(!tally.admit(3, "203.0.113.9", "rate_limited", None, 1000 + i));
        }
        // Another source still gets its own records.
        assert!(tally.admit(3, "198.51.100.1", "wrong_password", Some("password"), 2000));
        assert_eq!(own, 3);
        let records = tally.take(3000);
        assert_eq!(
            counts(&records),
            vec![
                ("\"203.0.113.9\" rate_limited".to_owned(), 50),
                ("\"203.0.113.9\" unknown_key".to_owned(), 997),
            ]
        );
        let detail: Value = serde_json::from_str(&records[1].detail).unwrap();
        assert_eq!(detail["first_at_ms"], 3);
        assert_eq!(detail["last_at_ms"], 999);
        assert_eq!(detail["credential"], "api_key");
        // A new interval: the share again.
        assert!(tally.admit(3, "203.0.113.9", "unknown_key", None, 4000));
        assert!(tally.take(5000).is_empty());
    }

    #[test]
    fn fresh_sources_past_the_bound_share_one_tally() {
        let mut tally = Tally::default();
        for i in 0..MAX_SOURCES + 500 {
            tally.admit(0, &format!("source-{i}"), "unknown_key", None, 0);
        }
        let records = tally.take(1);
        assert_eq!(records.len(), MAX_SOURCES + 1);
        assert!(
            counts(&records).contains(&("\"other\" unknown_key".to_owned(), 500)),
            "{:?}",
            counts(&records).last()
        );
    }
}
