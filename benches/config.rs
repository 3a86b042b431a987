//! Config loading cost: parse + resolve a generated 200-server file (5 locations each), and the
//! per-request routing calls on the result.
//!
//! Loading is off the hot path, but a reload should stay well under a frame of a busy worker;
//! routing is on it, so it is measured too.

use std::fmt::Write;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

fn generate(servers: usize) -> String {
    let mut s = String::from("http {\n  default_type application/octet-stream;\n");
    for i in 0..servers {
        let port = 8000 + i % 4;
        writeln!(
            s,
            "  server {{\n    listen {port};\n    server_name site{i}.example.com *.site{i}.example.org;\n    root www/site{i};\n    error_page 404 /404.html;\n    location = /health {{ return 200 ok; }}\n    location / {{ allow_methods GET HEAD; }}\n    location ^~ /static/ {{ autoindex on; }}\n    location ~ \\.(py|sh)$ {{ cgi .py /usr/bin/python3; cgi .sh /bin/sh; }}\n    location /up/ {{ upload_store up; client_max_body_size 10m; location /up/private/ {{ return 403; }} }}\n  }}"
        )
        .unwrap();
    }
    s.push_str("}\n");
    s
}

fn bench(c: &mut Criterion) {
    let text = generate(200);
    let prefix = Path::new("/srv");
    c.bench_function("parse 200 servers x 5 locations", |b| {
        b.iter(|| webserv::config::parse_str(black_box(&text), "bench.conf", prefix).unwrap())
    });

    let cfg = webserv::config::parse_str(&text, "bench.conf", prefix).unwrap();
    let local: SocketAddr = "127.0.0.1:8001".parse().unwrap();
    c.bench_function("select_server + select_location", |b| {
        b.iter(|| {
            let s = cfg.select_server(black_box(local), Some(black_box("site197.example.com")));
            s.location_for(black_box("/up/private/file.txt"))
                .client_max_body_size
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
