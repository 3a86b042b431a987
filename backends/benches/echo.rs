//! Echo round trips through each backend, and how many completions one wait reaps.
//!
//! `cargo bench -p backends --bench echo` — per backend: one 64-byte round trip on one
//! connection, and a batch where 32 connections each send 64 bytes and get them back. After each
//! group the bench prints the backend's completions per wait (what batching buys).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use backends::{Backend, Body, Buf, Kind, Op, Options, SendBuf};
use criterion::{criterion_group, criterion_main, Criterion};

struct Rig {
    b: Box<dyn Backend>,
    clients: Vec<TcpStream>,
    fds: Vec<RawFd>,
    _l: TcpListener,
}

fn rig(kind: Kind, n: usize) -> Rig {
    let mut b = backends::open(kind, &Options::default()).unwrap().backend;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let clients: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for c in &clients {
        c.set_nodelay(true).unwrap();
    }
    b.submit(u64::MAX - 1, Op::Accept { fd: l.as_raw_fd() });
    let mut fds = Vec::new();
    let mut out = Vec::new();
    while fds.len() < n {
        b.wait(&mut out, Some(Duration::from_secs(5))).unwrap();
        for c in out.drain(..) {
            fds.push(c.result.unwrap() as RawFd);
        }
    }
    for (i, &fd) in fds.iter().enumerate() {
        b.submit(i as u64, Op::Recv { fd });
    }
    Rig {
        b,
        clients,
        fds,
        _l: l,
    }
}

/// Every client sends 64 bytes; the server echoes each; every client reads its echo.
fn round(r: &mut Rig, out: &mut Vec<backends::Completion>) {
    let msg = [7u8; 64];
    for c in &mut r.clients {
        c.write_all(&msg).unwrap();
    }
    let n = r.clients.len();
    let mut sent = 0;
    while sent < n {
        r.b.wait(out, None).unwrap();
        for c in out.drain(..) {
            match c.buf {
                Buf::Recv(data) => {
                    let fd = r.fds[c.token as usize];
                    let head = data.to_vec();
                    r.b.release(data);
                    let buf = SendBuf {
                        head,
                        body: Body::Empty,
                    };
                    r.b.submit(1_000_000 + c.token, Op::Send { fd, buf });
                }
                Buf::Send(_) => sent += 1,
                _ => {}
            }
        }
    }
    let mut back = [0u8; 64];
    for c in &mut r.clients {
        c.read_exact(&mut back).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    for kind in backends::available() {
        let name = format!("{kind:?}").to_lowercase();
        for n in [1usize, 32] {
            let mut r = rig(kind, n);
            let mut out = Vec::new();
            c.bench_function(&format!("echo/{name}/{n}conn"), |bch| {
                bch.iter(|| round(&mut r, &mut out))
            });
            let s = r.b.stats();
            println!(
                "echo/{name}/{n}conn: {:.2} completions per wait (max {}), {} kernel entries for {} waits",
                s.completions_per_wait(),
                s.max_per_wait,
                s.enters,
                s.waits
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
