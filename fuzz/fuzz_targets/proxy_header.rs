//! The PROXY protocol header parser on arbitrary bytes: never panic; a complete header is no
//! longer than the input nor the limits; every prefix of a complete header is `Partial`, and
//! the answer does not depend on what follows the header (bytes after it are the request).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webserv::proxy::header::{parse, Parsed, V1_MAX, V2_MAX};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete { len, addrs }) => {
            assert!(len <= data.len());
            assert!(len <= V1_MAX.max(V2_MAX));
            for i in 0..len {
                assert_eq!(parse(&data[..i]), Ok(Parsed::Partial), "prefix {i} of {len}");
            }
            assert_eq!(parse(&data[..len]), Ok(Parsed::Complete { len, addrs }));
        }
        Ok(Parsed::Partial) => assert!(data.len() < V1_MAX.max(V2_MAX)),
        Err(_) => {
            // An error never turns into success with more bytes.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n");
            assert!(parse(&more).is_err());
        }
    }
});
