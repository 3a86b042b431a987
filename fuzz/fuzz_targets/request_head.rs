//! `HeadParser::parse` + `Request::analyze` (+ target normalisation) on arbitrary bytes:
//! never panic, and every result respects the parser's documented contract.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webserv::http::request::{MAX_HEADERS, MAX_HEADER_SECTION, MAX_REQUEST_LINE};
use webserv::http::{path, HeadParser, Status};

fuzz_target!(|data: &[u8]| {
    let mut p = HeadParser::new();
    match p.parse(data) {
        Ok(Status::Complete(req, n)) => {
            assert!(n <= data.len(), "head length {n} beyond the input");
            assert_eq!(req.head_len(), n);
            assert!(n <= MAX_REQUEST_LINE + MAX_HEADER_SECTION, "head over the limits");
            assert!(req.header_count() <= MAX_HEADERS);
            // The head ends with an empty line.
            assert!(data[..n].ends_with(b"\n"));
            for (name, value) in req.headers() {
                assert!(!name.is_empty());
                assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            if let Ok(head) = req.analyze() {
                let _ = head.keep_alive;
            }
            if req.path().starts_with('/') {
                if let Ok(norm) = path::normalize(req.path()) {
                    assert!(norm.path.starts_with('/'));
                    assert!(!norm.path.split('/').any(|s| s == ".." || s == "."));
                }
            }
        }
        Ok(Status::Partial) => {}
        Err(e) => {
            assert!(
                matches!(e.status(), 400 | 414 | 417 | 431 | 501 | 505),
                "unexpected status {} for {e:?}",
                e.status()
            );
        }
    }
});
