//! Secret references: `${env:NAME}` and `${file:PATH}` inside config strings.
//!
//! Secrets never sit in the config file itself; a value refers to where the secret lives and
//! is resolved when the config is loaded. `$${` writes a literal `${`.

use std::path::Path;

/// Whether the string contains at least one `${…}` reference.
pub fn has_reference(s: &str) -> bool {
    s.replace("$${", "").contains("${")
}

/// Whether the string contains an `${env:…}` or `${file:…}` reference (not a shell `${VAR}`).
pub fn has_named_reference(s: &str) -> bool {
    let s = s.replace("$${", "");
    s.contains("${env:") || s.contains("${file:")
}

/// Resolves every reference in `s`. Relative `file:` paths are taken from `base`.
/// The error says which reference failed and why.
pub fn resolve(s: &str, base: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or_else(|| format!("`{}` has an unclosed `${{`", s))?;
            let reference = &t[..end];
            out.push_str(&resolve_one(reference, base)?);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks reference syntax without reading anything (for `opsbot check --no-secrets`).
pub fn check_syntax(s: &str) -> Result<(), String> {
    let mut rest = s.replace("$${", "");
    while let Some(i) = rest.find("${") {
        let t = &rest[i + 2..];
        let end = t.find('}').ok_or_else(|| format!("`{s}` has an unclosed `${{`"))?;
        match t[..end].split_once(':') {
            Some(("env" | "file", v)) if !v.is_empty() => {}
            _ => {
                return Err(format!(
                    "`${{{}}}` is not a reference opsbot knows; use `${{env:NAME}}` or `${{file:PATH}}`",
                    &t[..end]
                ));
            }
        }
        rest = t[end + 1..].to_string();
    }
    Ok(())
}

fn resolve_one(reference: &str, base: &Path) -> Result<String, String> {
    match reference.split_once(':') {
        Some(("env", name)) if !name.is_empty() => {
            std::env::var(name).map_err(|_| format!("environment variable `{name}` (from `${{env:{name}}}`) is not set"))
        }
        Some(("file", path)) if !path.is_empty() => {
            let p = base.join(path);
            std::fs::read_to_string(&p)
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read `{}` (from `${{file:{path}}}`): {e}", p.display()))
        }
        _ => Err(format!(
            "`${{{reference}}}` is not a reference opsbot knows; use `${{env:NAME}}` or `${{file:PATH}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_env_file_and_escape() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        // SAFETY: single-threaded test setting a variable only it reads.
        unsafe { std::env::set_var("OPSBOT_TEST_SECRET_X", "abc") };
        assert_eq!(resolve("a${env:OPSBOT_TEST_SECRET_X}b", dir.path()).unwrap(), "aabcb");
        assert_eq!(resolve("${file:tok}", dir.path()).unwrap(), "s3cret");
        assert_eq!(resolve("$${env:X} $5", dir.path()).unwrap(), "${env:X} $5");
        assert!(resolve("${env:OPSBOT_TEST_UNSET_Y}", dir.path()).unwrap_err().contains("not set"));
        assert!(resolve("${vault:x}", dir.path()).unwrap_err().contains("not a reference"));
        assert!(resolve("${env:X", dir.path()).unwrap_err().contains("unclosed"));
        assert!(check_syntax("a ${env:X} ${file:y} $${z").is_ok());
        assert!(check_syntax("${vault:x}").unwrap_err().contains("not a reference"));
        assert!(check_syntax("${env:X").unwrap_err().contains("unclosed"));
    }
}
