//! `opsbot audit verify` and `opsbot audit export` on real databases, some tampered with the way
//! someone holding the file would (raw SQL after dropping the append-only triggers).

use crate::harness::*;
use regex::Regex;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs `opsbot audit ARGS…`; returns (exit code, stdout, stderr).
fn audit(sb: &Sandbox, cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = sb.cmd(cfg).arg("audit").args(args).output().expect("run opsbot audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A sandbox with the test config and six decisions in its audit trail: runs by ana and bob,
/// one refused.
fn trail() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    for (user, args, code) in [
        ("ana", &["echo", "v=one"][..], 0),
        ("bob", &["echo", "v=two"], 0),
        ("ana", &["count", "n=0"], 2),
        ("bob", &["count", "n=2"], 0),
        ("ana", &["ECHO", "v=three"], 0),
        ("bob", &["fail"], 1),
    ] {
        let out = sb.cmd(&cfg).args(["run", "--user", user]).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (sb, cfg)
}

/// Runs SQL statements on the database file directly.
fn tamper(db: &Path, statements: &[&str]) {
    let conn = opsbot_store::rusqlite::Connection::open(db).expect("open the file");
    for s in statements {
        conn.execute_batch(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.close().map_err(|(_, e)| e).expect("close the file");
}

const DROP_TRIGGERS: [&str; 3] = [
    "DROP TRIGGER audit_no_update",
    "DROP TRIGGER audit_no_delete",
    "DROP TRIGGER audit_chained",
];

/// The `N records, chain intact up to #ID, hash H` line: (N, ID, H).
fn intact(stdout: &str) -> (u64, i64, String) {
    let re = Regex::new(r"(?m)^(\d+) records, chain intact up to #(\d+), hash ([0-9a-f]{64})$").unwrap();
    let c = re.captures(stdout).unwrap_or_else(|| panic!("no verdict line in {stdout:?}"));
    (c[1].parse().unwrap(), c[2].parse().unwrap(), c[3].to_string())
}

/// The export as JSON values, one per line.
fn jsonl(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn verify_proves_an_intact_trail_then_names_a_changed_record() {
    let (sb, cfg) = trail();
    let (code, out, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (n, last, hash) = intact(&out);
    assert_eq!((n, last), (6, 6), "{out}");
    // The printed hash is the newest record's stored hash.
    let records = jsonl(&audit(&sb, &cfg, &["export"]).1);
    assert_eq!(records.last().expect("records")["hash"], Value::String(hash));

    let mut statements = DROP_TRIGGERS.to_vec();
    statements.push("UPDATE audit SET decision = 'accepted', reason = NULL WHERE id = 3");
    tamper(&sb.db(), &statements);
    let (code, out, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("the audit chain is broken at record #3"), "{err}");
    assert!(
        err.contains("the record was changed after it was written, or its hash was edited"),
        "{err}"
    );
    assert!(err.contains("The 2 record(s) before it are intact (up to #2, hash"), "{err}");
    assert!(err.contains("What to do:"), "{err}");
}

#[test]
fn verify_names_a_deleted_record_a_reordered_pair_and_an_edited_hash() {
    // Deleted: the record after the hole does not link.
    let (sb, cfg) = trail();
    let mut statements = DROP_TRIGGERS.to_vec();
    statements.push("DELETE FROM audit WHERE id = 4");
    tamper(&sb.db(), &statements);
    let (code, _, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken at record #5: its prev_hash"), "{err}");
    assert!(err.contains("a record before it was deleted"), "{err}");
    assert!(err.contains("Record ids jump from #3 to #5"), "{err}");

    // Reordered: records 2 and 3 trade ids.
    let (sb, cfg) = trail();
    let mut statements = DROP_TRIGGERS.to_vec();
    statements.extend([
        "UPDATE audit SET id = -3 WHERE id = 3",
        "UPDATE audit SET id = 3 WHERE id = 2",
        "UPDATE audit SET id = 2 WHERE id = -3",
    ]);
    tamper(&sb.db(), &statements);
    let (code, _, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken at record #2:"), "{err}");
    assert!(err.contains("records were inserted or reordered"), "{err}");

    // An edited hash column.
    let (sb, cfg) = trail();
    let forged = format!("UPDATE audit SET hash = '{}' WHERE id = 6", "0".repeat(64));
    let mut statements = DROP_TRIGGERS.to_vec();
    statements.push(&forged);
    tamper(&sb.db(), &statements);
    let (code, _, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken at record #6: its content hashes to"), "{err}");
    assert!(err.contains("The 5 record(s) before it are intact"), "{err}");
}

#[test]
fn anchors_catch_removed_newest_records() {
    let (sb, cfg) = trail();
    let (_, out, _) = audit(&sb, &cfg, &["verify"]);
    let (_, last, hash) = intact(&out);
    let anchor = format!("{last}:{hash}");
    let (code, out, err) = audit(&sb, &cfg, &["verify", "--anchor", &anchor]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("anchor #{last}: same hash as before")), "{out}");

    // The newest record removed: the rest of the chain is intact, the anchor is not.
    let mut statements = DROP_TRIGGERS.to_vec();
    let delete = format!("DELETE FROM audit WHERE id = {last}");
    statements.push(&delete);
    tamper(&sb.db(), &statements);
    let (code, _, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 0, "the chain alone cannot see a removed tail: {err}");
    let (code, out, err) = audit(&sb, &cfg, &["verify", "--anchor", &anchor]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains(&format!("anchored record #{last} is no longer in the chain")), "{err}");

    let (code, _, err) = audit(&sb, &cfg, &["verify", "--anchor", "12:abc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not ID:HASH"), "{err}");
}

#[test]
fn verify_of_an_empty_trail_and_of_a_missing_file() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let (code, _, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("there is no database at"), "{err}");
    assert!(!sb.db().exists(), "verify must not create the file it was asked about");

    // An opened store with no decisions yet.
    let out = sb.cmd(&cfg).args(["token", "list"]).output().expect("token list");
    assert!(out.status.success());
    let (code, out, err) = audit(&sb, &cfg, &["verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 records"), "{out}");
}

#[test]
fn export_is_oldest_first_chained_and_filtered() {
    let (sb, cfg) = trail();
    let (code, out, err) = audit(&sb, &cfg, &["export"]);
    assert_eq!(code, 0, "{err}");
    let all = jsonl(&out);
    assert_eq!(all.len(), 6);
    let mut keys: Vec<&str> = all[0].as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "id",
        "at",
        "actor",
        "actor_name",
        "place",
        "action",
        "job",
        "params",
        "decision",
        "reason",
        "execution_id",
        "prev_hash",
        "hash",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    // In the API's order, the links last.
    let line = out.lines().next().unwrap();
    assert!(line.starts_with(r#"{"id":1,"at":""#), "{line}");
    assert!(
        Regex::new(r#","execution_id":\d+,"prev_hash":"0{64}","hash":"[0-9a-f]{64}"\}$"#)
            .unwrap()
            .is_match(line),
        "{line}"
    );
    assert_eq!(all[0]["prev_hash"], Value::String("0".repeat(64)));
    for pair in all.windows(2) {
        assert!(pair[0]["id"].as_i64() < pair[1]["id"].as_i64(), "oldest first");
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "each links to the one before");
    }
    assert_eq!(all[2]["decision"], "refused");
    assert_eq!(all[2]["execution_id"], Value::Null);
    assert_eq!(all[0]["params"]["v"], "one");
    assert!(
        Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            .unwrap()
            .is_match(all[0]["at"].as_str().unwrap())
    );

    // By actor; by job (the config's job in any case, like the API).
    let ids = |args: &[&str]| -> Vec<i64> {
        let (code, out, err) = audit(&sb, &cfg, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        jsonl(&out).iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(ids(&["export", "--actor", "cli:bob"]), vec![2, 4, 6]);
    assert_eq!(ids(&["export", "--job", "Echo"]), vec![1, 2, 5]);
    assert_eq!(ids(&["export", "--job", "echo", "--actor", "cli:ana"]), vec![1, 5]);
    assert_eq!(ids(&["export", "--actor", "cli:nobody"]), Vec::<i64>::new());
    // By time: dates are whole days (UTC), `until` is exclusive.
    let (first_day, last_day) = (&all[0]["at"].as_str().unwrap()[..10], &all[5]["at"].as_str().unwrap()[..10]);
    assert_eq!(
        ids(&["export", "--since", first_day, "--until", last_day]).len(),
        6,
        "until a date includes that day"
    );
    assert!(ids(&["export", "--since", "2999-01-01"]).is_empty());
    assert!(ids(&["export", "--until", "2000-01-01T00:00:00Z"]).is_empty());
    let third = all[2]["at"].as_str().unwrap().to_string();
    assert_eq!(ids(&["export", "--since", &third])[0], 3, "since is inclusive (RFC 3339)");

    // One JSON document.
    let (code, out, err) = audit(&sb, &cfg, &["export", "--format", "json", "--actor", "cli:ana"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    let records = doc["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    assert_eq!(records[0], all[0]);

    // Mistakes are refused with the rule.
    for (args, says) in [
        (&["export", "--since", "yesterday"][..], "is neither a date like 2024-05-01"),
        (
            &["export", "--since", "2024-05-02", "--until", "2024-05-01"],
            "--since is not before --until",
        ),
        (&["export", "--actor", "bob"], "platform:id"),
        (&["export", "--format", "csv"], "possible values: jsonl, json"),
    ] {
        let (code, _, err) = audit(&sb, &cfg, args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The export's records are the REST API's (`GET /api/v1/audit?format=jsonl`), oldest first,
/// plus `prev_hash` and `hash`.
#[test]
fn export_has_the_api_fields_plus_hashes() {
    let (sb, cfg) = trail();
    let token = sb.token(&cfg, "auditor");
    let (serve, addr) = sb.serve(&cfg);
    let (status, body) = http(&addr, "GET", "/api/v1/audit?format=jsonl&limit=1000", Some(&token), None);
    drop(serve);
    assert_eq!(status, 200, "{body}");
    let mut api = jsonl(&body);
    api.reverse();
    let mut exported = jsonl(&audit(&sb, &cfg, &["export"]).1);
    assert_eq!(api.len(), exported.len());
    for r in &mut exported {
        let o = r.as_object_mut().expect("object");
        assert!(o.remove("prev_hash").is_some_and(|h| h.is_string()));
        assert!(o.remove("hash").is_some_and(|h| h.is_string()));
    }
    assert_eq!(exported, api);
}
