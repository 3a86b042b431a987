//! `config::parse_str_all` on arbitrary UTF-8: a config either builds (with warnings only) or is
//! refused with at least one error, never a panic or a hang; every diagnostic renders in the GNU
//! format `FILE:LINE:COL: error|warning: …`. The prefix does not exist, so relative paths find
//! nothing. Seeds (fuzz/seeds/config) cover the issue-13 syntax: the header-limit directives,
//! `server_tokens`, and configs with several errors and a duplicate-name warning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let r = webserv::config::parse_str_all(
        text,
        "fuzz.conf",
        Path::new("/nonexistent/webserv-fuzz-prefix"),
    );
    let diags = match &r {
        Ok((_, warnings)) => {
            assert!(!warnings.has_errors(), "a config was built despite an error");
            warnings
        }
        Err(d) => {
            assert!(d.has_errors(), "refused without an error");
            d
        }
    };
    for d in diags.iter() {
        let kind = if d.is_error() { "error" } else { "warning" };
        let prefix = format!("{}:{}:{}: {kind}: ", d.file, d.line, d.col);
        assert!(d.to_string().starts_with(&prefix), "{d}");
    }
});
