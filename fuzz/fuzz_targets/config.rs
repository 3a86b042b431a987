//! `config::parse_str` on arbitrary UTF-8: a config either builds or is a `ConfigError`,
//! never a panic or a hang. The prefix does not exist, so relative paths find nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let _ = webserv::config::parse_str(
        text,
        "fuzz.conf",
        Path::new("/nonexistent/webserv-fuzz-prefix"),
    );
});
