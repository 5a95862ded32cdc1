//! The per-session hash chain: a canonical, versioned encoding of each event
//! and the SHA-256 that links it to the one before. Pure: no I/O, so the
//! control plane (at ingest), the API (online verification) and the CLI
//! (offline verification of an export) compute exactly the same bytes.
//!
//! A chained record is a JSON object: the event's own fields (`session_id`,
//! `seq`, `at`, `kind` and the kind's fields) plus `v` (the schema version)
//! and `prev_hash`. Its hash is SHA-256 over [`DOMAIN`] followed by the
//! record in canonical JSON (object keys sorted, no whitespace), `hash`
//! itself excluded. An export line is that record with `hash` added, so a
//! line verifies on its own, and any field added, removed or changed breaks
//! it.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::store::StoredEvent;

/// The version of the record encoding. A verifier refuses versions it does
/// not know rather than guessing.
pub const SCHEMA_VERSION: u64 = 1;

/// `prev_hash` of a session's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Prefix of every hashed record, so a record hash can never be confused
/// with any other SHA-256 the system computes.
pub const DOMAIN: &[u8] = b"sluice.audit.event.v1\n";

/// Why an event could not be turned into a record.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The event did not serialise to a JSON object.
    #[error("event does not encode as a JSON object")]
    NotAnObject,
    /// serde_json refused it.
    #[error("cannot encode event: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `v` as canonical JSON: keys sorted by their UTF-8 bytes, no
/// whitespace, strings escaped as serde_json escapes them, integers in
/// decimal. Independent of the map type serde_json was built with.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(k, out);
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
    }
}

fn push_string(s: &str, out: &mut String) {
    // Serialising a &str cannot fail; the fallback keeps this total.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// `v` in canonical JSON, as a string.
pub fn canonical_string(v: &Value) -> String {
    let mut out = String::new();
    canonical(v, &mut out);
    out
}

/// The hash of a record: SHA-256 over [`DOMAIN`] and the canonical record
/// without its `hash` field, in lowercase hex.
pub fn hash_record(record: &Map<String, Value>) -> String {
    let mut without = record.clone();
    without.remove("hash");
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(canonical_string(&Value::Object(without)).as_bytes());
    hex::encode(hasher.finalize())
}

/// Builds the record of an event from its stored parts: the payload object
/// (the kind and its fields, as stored) plus position and chain fields.
pub fn record(
    session_id: &str,
    seq: u64,
    at: i64,
    payload: Map<String, Value>,
    version: u64,
    prev_hash: &str,
) -> Map<String, Value> {
    let mut r = payload;
    r.insert("session_id".to_owned(), Value::from(session_id));
    r.insert("seq".to_owned(), Value::from(seq));
    r.insert("at".to_owned(), Value::from(at));
    r.insert("v".to_owned(), Value::from(version));
    r.insert("prev_hash".to_owned(), Value::from(prev_hash));
    r
}

/// An event's payload as a JSON object (the form stored and hashed).
pub fn payload_of(e: &StoredEvent) -> Result<Map<String, Value>, ChainError> {
    match serde_json::to_value(&e.kind)? {
        Value::Object(m) => Ok(m),
        _ => Err(ChainError::NotAnObject),
    }
}

/// The newest chained event of a session: where the next one links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The session.
    pub session_id: String,
    /// Its highest stored sequence number.
    pub seq: u64,
    /// That event's hash.
    pub hash: String,
}

/// An event ready to store: its payload text and chain fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Chained {
    /// The event.
    pub event: StoredEvent,
    /// The payload as stored (JSON text of the kind and its fields).
    pub payload: String,
    /// Hash of the event before it in the session, or [`GENESIS`].
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// What [`link`] made of a batch.
#[derive(Debug, Default)]
pub struct Linked {
    /// New events, chained, in session and sequence order.
    pub chained: Vec<Chained>,
    /// Events at or below their session's stored head: resends of stored
    /// events, or late arrivals that can no longer join the chain (the
    /// verifier reports their absence as a gap).
    pub skipped: Vec<(String, u64)>,
}

/// Chains a batch onto the sessions' current heads. Events of a session are
/// taken in sequence order; duplicates inside the batch are dropped; an
/// event whose sequence number is not above its session's head is skipped.
/// A missing sequence number (the node lost it) leaves a gap in `seq`, not in
/// the chain: the next event links to the last stored one.
pub fn link(heads: &HashMap<String, Head>, events: &[StoredEvent]) -> Result<Linked, ChainError> {
    let mut order: Vec<&StoredEvent> = events.iter().collect();
    order.sort_by(|a, b| (&a.session_id, a.seq).cmp(&(&b.session_id, b.seq)));
    let mut out = Linked::default();
    let mut tip: HashMap<&str, (u64, String)> = HashMap::new();
    for e in order {
        let (last_seq, last_hash) = match tip.get(e.session_id.as_str()) {
            Some((s, h)) => (*s, h.clone()),
            None => match heads.get(&e.session_id) {
                Some(h) => (h.seq, h.hash.clone()),
                None => (0, GENESIS.to_owned()),
            },
        };
        if e.seq <= last_seq {
            out.skipped.push((e.session_id.clone(), e.seq));
            continue;
        }
        let payload = payload_of(e)?;
        let payload_text = serde_json::to_string(&payload)?;
        let rec = record(
            &e.session_id,
            e.seq,
            e.at,
            payload,
            SCHEMA_VERSION,
            &last_hash,
        );
        let hash = hash_record(&rec);
        tip.insert(&e.session_id, (e.seq, hash.clone()));
        out.chained.push(Chained {
            event: e.clone(),
            payload: payload_text,
            prev_hash: last_hash,
            hash,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventKind;

    fn end(session: &str, seq: u64) -> StoredEvent {
        StoredEvent {
            session_id: session.to_owned(),
            seq,
            at: 10 * i64::try_from(seq).unwrap(),
            kind: EventKind::SessionEnd {
                reason: "client closed".to_owned(),
                statements: seq,
                bytes_to_client: 1,
                bytes_from_client: 2,
            },
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": true}], "a": "x\"y" }"#).unwrap();
        assert_eq!(
            canonical_string(&v),
            r#"{"a":"x\"y","b":[1,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn record_hash_is_stable_and_covers_every_field() {
        let e = end("s", 1);
        let rec = record("s", 1, 10, payload_of(&e).unwrap(), 1, GENESIS);
        let h = hash_record(&rec);
        // Pinned: changing the encoding must be a new schema version.
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_record(&rec));
        for key in rec.keys() {
            let mut changed = rec.clone();
            changed.insert(key.clone(), Value::from("tampered"));
            assert_ne!(hash_record(&changed), h, "field {key} is not covered");
        }
        let mut extra = rec.clone();
        extra.insert("note".to_owned(), Value::from(1));
        assert_ne!(hash_record(&extra), h);
        // The hash field itself is not part of what is hashed.
        let mut with_hash = rec;
        with_hash.insert("hash".to_owned(), Value::from(h.clone()));
        assert_eq!(hash_record(&with_hash), h);
    }

    #[test]
    fn link_chains_in_seq_order_and_skips_what_is_stored() {
        let heads = HashMap::from([(
            "a".to_owned(),
            Head {
                session_id: "a".to_owned(),
                seq: 2,
                hash: "h2".to_owned(),
            },
        )]);
        let batch = vec![
            end("a", 4),
            end("b", 1),
            end("a", 3),
            end("a", 2),
            end("a", 3),
        ];
        let linked = link(&heads, &batch).unwrap();
        let got: Vec<(&str, u64, &str)> = linked
            .chained
            .iter()
            .map(|c| {
                (
                    c.event.session_id.as_str(),
                    c.event.seq,
                    c.prev_hash.as_str(),
                )
            })
            .collect();
        assert_eq!(got[0], ("a", 3, "h2"));
        assert_eq!(got[1].1, 4);
        assert_eq!(got[1].2, linked.chained[0].hash);
        assert_eq!(got[2], ("b", 1, GENESIS));
        assert_eq!(got.len(), 3);
        assert_eq!(
            linked.skipped,
            vec![("a".to_owned(), 2), ("a".to_owned(), 3)]
        );
    }

    #[test]
    fn a_lost_event_leaves_a_seq_gap_but_an_unbroken_chain() {
        let linked = link(&HashMap::new(), &[end("a", 1), end("a", 3)]).unwrap();
        assert_eq!(linked.chained[1].prev_hash, linked.chained[0].hash);
    }

    #[test]
    fn payload_text_round_trips_to_the_hashed_object() {
        let linked = link(&HashMap::new(), &[end("a", 1)]).unwrap();
        let c = &linked.chained[0];
        let payload: Map<String, Value> = serde_json::from_str(&c.payload).unwrap();
        let rec = record("a", 1, c.event.at, payload, SCHEMA_VERSION, GENESIS);
        assert_eq!(hash_record(&rec), c.hash);
    }
}
