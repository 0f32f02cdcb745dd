//! The audit hash chain: the canonical encoding of a record and its hash.
//!
//! `hash = SHA-256(prev_hash || encoding(record))`, written as 64 lower-case hex digits, where
//! `prev_hash` is the 64 ASCII hex digits of the previous record's hash ([`GENESIS_HASH`] for the
//! first record). The encoding is documented byte for byte in docs/security.md ("The audit hash
//! chain") so that the chain can be re-verified without opsbot; a change here is a new format
//! version there.

use crate::AuditRecord;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first bytes of every encoding: names the format and its version.
const MAGIC: &[u8] = b"opsbot-audit/1";

/// Tags of the encoded values.
const NULL: u8 = 0x00;
const INT: u8 = 0x01;
const TEXT: u8 = 0x02;
const MAP: u8 = 0x03;

/// The canonical encoding of a record (its id included): [`MAGIC`], then the fields in a fixed
/// order, each tagged — NULL `00`; integer `01` + 8 bytes big-endian (two's complement); text
/// `02` + its UTF-8 length as 8 bytes big-endian + the UTF-8 bytes; params `03` + the number of
/// entries as 8 bytes big-endian + each entry, by key in byte order, as key text then value text.
pub fn audit_encoding(r: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    int(&mut out, r.id);
    int(&mut out, r.at.timestamp_millis());
    text(&mut out, &r.actor.platform);
    text(&mut out, &r.actor.id);
    text(&mut out, &r.actor_name);
    text(&mut out, &r.place.platform);
    text(&mut out, &r.place.channel);
    opt_text(&mut out, r.place.thread.as_deref());
    text(&mut out, &r.action);
    opt_text(&mut out, r.job.as_deref());
    match &r.params {
        None => out.push(NULL),
        Some(params) => {
            out.push(MAP);
            len(&mut out, params.len());
            // A BTreeMap of Strings iterates in the byte order of its keys.
            for (k, v) in params {
                text(&mut out, k);
                text(&mut out, v);
            }
        }
    }
    text(&mut out, &r.decision);
    opt_text(&mut out, r.reason.as_deref());
    match r.execution_id {
        None => out.push(NULL),
        Some(id) => int(&mut out, id),
    }
    out
}

/// The hash of `record` chained to `prev_hash` (the previous record's hash as stored, 64 hex
/// digits): lower-case hex of SHA-256 over `prev_hash`'s ASCII bytes and the record's encoding.
pub fn audit_hash(prev_hash: &str, record: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(audit_encoding(record));
    hex::encode(h.finalize())
}

fn int(out: &mut Vec<u8>, v: i64) {
    out.push(INT);
    out.extend_from_slice(&v.to_be_bytes());
}

fn len(out: &mut Vec<u8>, n: usize) {
    // usize is at most 64 bits on every supported target.
    out.extend_from_slice(&(n as u64).to_be_bytes());
}

fn text(out: &mut Vec<u8>, s: &str) {
    out.push(TEXT);
    len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(NULL),
        Some(s) => text(out, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use opsbot_core::{Params, Place, UserId};

    /// The example record of docs/security.md.
    fn example() -> AuditRecord {
        let mut params = Params::new();
        params.insert("env".into(), "prod".into());
        params.insert("app".into(), "web".into());
        AuditRecord {
            id: 1,
            at: DateTime::from_timestamp_millis(1_700_000_000_000).expect("time"),
            actor: UserId::new("slack", "U024BE7LH"),
            actor_name: "Ana".into(),
            place: Place::new("slack", "C01"),
            action: "run".into(),
            job: Some("deploy".into()),
            params: Some(params),
            decision: "accepted".into(),
            reason: None,
            execution_id: Some(42),
        }
    }

    #[test]
    fn the_documented_example_hashes_as_documented() {
        // If this changes, the format changed: docs/security.md and every stored chain with it.
        let h = audit_hash(GENESIS_HASH, &example());
        assert_eq!(h, "83c2cb48889c6352011a6cce3fa6b76a79c73d68ba789c91dba3cc320aa7d98f");
    }

    #[test]
    fn the_encoding_starts_with_the_format_and_tags_every_field() {
        let e = audit_encoding(&example());
        assert!(e.starts_with(b"opsbot-audit/1\x01"));
        let mut want = b"opsbot-audit/1".to_vec();
        want.push(INT);
        want.extend_from_slice(&1i64.to_be_bytes());
        want.push(INT);
        want.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        want.push(TEXT);
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(b"slack");
        assert_eq!(&e[..want.len()], &want[..]);
    }

    #[test]
    fn null_empty_and_moved_text_encode_differently() {
        let base = example();
        let null_reason = audit_encoding(&base);
        let empty_reason = audit_encoding(&AuditRecord {
            reason: Some(String::new()),
            ..base.clone()
        });
        assert_ne!(null_reason, empty_reason);
        // Text moved from one field to its neighbour changes the encoding (lengths are part of it).
        let a = audit_encoding(&AuditRecord {
            actor: UserId::new("slack", "U0"),
            actor_name: "24Ana".into(),
            ..base.clone()
        });
        let b = audit_encoding(&AuditRecord {
            actor: UserId::new("slack", "U024"),
            actor_name: "Ana".into(),
            ..base.clone()
        });
        assert_ne!(a, b);
        // No params and empty params differ; the id is part of the record.
        assert_ne!(
            audit_encoding(&AuditRecord {
                params: None,
                ..base.clone()
            }),
            audit_encoding(&AuditRecord {
                params: Some(Params::new()),
                ..base.clone()
            })
        );
        assert_ne!(
            audit_hash(GENESIS_HASH, &base),
            audit_hash(GENESIS_HASH, &AuditRecord { id: 2, ..base })
        );
    }
}
