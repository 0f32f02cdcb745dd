//! Config text → `Config::parse` (secrets not resolved, so nothing outside the text is read but
//! program paths and working directories). Besides "no panic": every diagnostic points into the
//! text, and a config that loads gives a catalog the grammar can use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Diagnostic, LoadError};
use opsbot_engine::grammar::Grammar;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, Path::new("/tmp/fuzz/opsbot.toml"), LoadOptions { resolve_secrets: false }) {
        Ok(config) => check_loaded(&config),
        Err(LoadError::Invalid(diags)) => {
            assert!(!diags.is_empty(), "invalid without a diagnostic");
            for d in &diags {
                check_position(text, d);
            }
        }
        Err(e @ LoadError::Io { .. }) => panic!("parse does no file reading of the config: {e}"),
    }
});

/// "1-based line", "1-based column (in characters)", "The offending source line": the position
/// lies within the text and `source_line` is that line.
fn check_position(text: &str, d: &Diagnostic) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(d.line >= 1 && d.col >= 1, "{d:?}");
    assert!(d.line <= lines.len(), "line {} of a text of {} lines: {d:?}", d.line, lines.len());
    let line = lines[d.line - 1];
    assert!(
        d.col <= line.chars().count() + 1,
        "col {} past the end of line {:?}: {d:?}",
        d.col,
        line
    );
    let rest = line.strip_prefix(d.source_line.as_str());
    assert!(
        rest.is_some_and(|r| r.is_empty() || r == "\r"),
        "source_line {:?} is not line {} ({line:?})",
        d.source_line,
        d.line
    );
    let _ = d.to_string();
}

/// A loaded config: at least one job ("no jobs are defined" is an error), names unique and found
/// by `Catalog::get`, every default in canonical form, and the grammar compiles the aliases and
/// reads the examples without panicking.
fn check_loaded(config: &Config) {
    let catalog = &config.catalog;
    assert!(!catalog.is_empty(), "a config without jobs loaded");
    for job in catalog.jobs() {
        let found = catalog.get(&job.name).expect("job found by name");
        assert!(std::ptr::eq(found, job), "two jobs named `{}`", job.name);
        for p in &job.params {
            if let Some(d) = &p.default {
                assert_eq!(
                    p.normalize(d).as_ref(),
                    Ok(d),
                    "default of `{}.{}` is not canonical",
                    job.name,
                    p.name
                );
                assert!(!p.required, "`{}.{}` is required and has a default", job.name, p.name);
            }
        }
    }
    let grammar = Grammar::new(catalog);
    for job in catalog.jobs() {
        for text in job.examples.iter().chain(&job.aliases) {
            let _ = grammar.parse(text, catalog);
        }
    }
}
