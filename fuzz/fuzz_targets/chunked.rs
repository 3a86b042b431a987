//! `ChunkedDecoder` on arbitrary bytes: never panic, never produce more data than input, never
//! consume more than given, and stop exactly at the end of the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webserv::http::ChunkedDecoder;

fuzz_target!(|data: &[u8]| {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    if let Ok((used, done)) = d.decode(data, &mut out) {
        assert!(used <= data.len());
        assert!(out.len() <= used, "more data out than bytes in");
        assert_eq!(done, d.is_done());
        if !done {
            assert_eq!(used, data.len(), "stopped early without finishing");
        }
    }
});
