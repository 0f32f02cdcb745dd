-- The audit trail becomes a hash chain (docs/security.md, "The audit hash chain"): every record
-- carries the hash of the record before it (`prev_hash`; 64 zeros for the first) and its own
-- (`hash` = SHA-256 over `prev_hash` and the record's canonical encoding, 64 hex digits), both
-- written with the record. The store computes them; SQL cannot.
ALTER TABLE audit ADD COLUMN prev_hash TEXT NULL;
ALTER TABLE audit ADD COLUMN hash TEXT NULL;

-- Records written before this migration have no hash yet. The store chains them, in id order,
-- the first time it opens the file after this migration (records up to `up_to` only, never a
-- record added later), then deletes this row.
CREATE TABLE audit_unchained (
    up_to INTEGER NOT NULL
);
INSERT INTO audit_unchained (up_to) SELECT MAX(id) FROM audit HAVING COUNT(*) > 0;

-- Still append-only. The one update allowed: giving a record from before this migration its
-- hashes, once (both were NULL), while `audit_unchained` says it is one of those, with every
-- other column unchanged. Once the store has chained them the table is empty and no update passes.
DROP TRIGGER audit_no_update;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
WHEN NOT COALESCE(
    OLD.hash IS NULL AND OLD.prev_hash IS NULL
    AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
    AND OLD.id <= COALESCE((SELECT MAX(up_to) FROM audit_unchained), 0)
    AND NEW.id IS OLD.id AND NEW.at IS OLD.at
    AND NEW.actor_platform IS OLD.actor_platform AND NEW.actor_id IS OLD.actor_id
    AND NEW.actor_name IS OLD.actor_name
    AND NEW.place_platform IS OLD.place_platform AND NEW.place_channel IS OLD.place_channel
    AND NEW.place_thread IS OLD.place_thread
    AND NEW.action IS OLD.action AND NEW.job IS OLD.job AND NEW.params IS OLD.params
    AND NEW.decision IS OLD.decision AND NEW.reason IS OLD.reason
    AND NEW.execution_id IS OLD.execution_id,
    0)
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

-- A new record must carry its hashes and extend the chain: an explicit id above every stored
-- one, and `prev_hash` equal to the newest record's hash. Checked inside the INSERT, under the
-- database's write lock, so two writers can never chain to the same record: the second one is
-- refused and the store retries it under `BEGIN IMMEDIATE`.
CREATE TRIGGER audit_chained BEFORE INSERT ON audit
WHEN NEW.hash IS NULL OR NEW.prev_hash IS NULL OR length(NEW.hash) != 64
    OR NEW.id IS NULL OR NEW.id <= COALESCE((SELECT MAX(id) FROM audit), 0)
    OR NEW.prev_hash IS NOT COALESCE(
        (SELECT hash FROM audit ORDER BY id DESC LIMIT 1),
        '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
    SELECT RAISE(ABORT, 'an audit record must extend the hash chain');
END;
