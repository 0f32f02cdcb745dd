//! Password hashes for web users: Argon2id in the PHC string format (`$argon2id$v=19$…`), as
//! `opsbot user hash-password` prints them and `[web.users.NAME] password_hash` holds them.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Longest password accepted, in bytes (hashing cost grows with length; nobody types more).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes a password with Argon2id, the library's default parameters and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("a password is at most {MAX_PASSWORD_LEN} bytes"));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash or an
/// over-long password too).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Checks that `hash` is an Argon2 PHC string opsbot can verify; the error says what is wrong.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC password hash ({e})"))?;
    let alg = parsed.algorithm.as_str();
    if !["argon2id", "argon2i", "argon2d"].contains(&alg) {
        return Err(format!("the hash uses `{alg}`; opsbot verifies Argon2 hashes only"));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the hash has no salt or no output".into());
    }
    // Parameters the verifier would refuse (e.g. m below 8·p) are found by trying.
    argon2::Params::try_from(&parsed).map_err(|e| format!("its Argon2 parameters are invalid ({e})"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "nonsense"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "fresh salt each time");
    }

    #[test]
    fn reference_hash_verifies() {
        // The example of the reference implementation's README (phc-winner-argon2):
        // `echo -n "password" | ./argon2 somesalt -t 2 -m 16 -p 4 -l 24` prints this encoded hash.
        let h = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        check_hash(h).unwrap();
        assert!(verify_password("password", h));
        assert!(!verify_password("Password", h));
    }

    #[test]
    fn bad_hashes_are_explained() {
        assert!(check_hash("hunter2").unwrap_err().contains("PHC"));
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuu").is_err());
        let pbkdf = "$pbkdf2-sha256$i=1000$c29tZXNhbHQ$Y2hlY2s";
        assert!(check_hash(pbkdf).is_err());
        assert!(!verify_password(
            &"x".repeat(MAX_PASSWORD_LEN + 1),
            "$argon2id$v=19$m=16,t=2,p=1$c29tZXNhbHQ$aGFzaA"
        ));
    }
}
