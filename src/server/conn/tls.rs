//! TLS on a connection (issue 14): a rustls session between the socket and the HTTP
//! layer, driven entirely by the connection's ordinary operations — no thread, no blocking.
//!
//! - **In**: each buffer a `Recv` completion brings is fed to rustls (`read_tls`, then
//!   `process_new_packets`); the plaintext it yields is appended to the connection's input, as
//!   received bytes are on a plain connection. Before the handshake completes the phase is
//!   [`Phase::Handshake`] under the header timeout, which received handshake bytes do not
//!   extend (a slow handshake is cut like a slow head).
//! - **Out**: the HTTP layer queues plaintext in the [`OutQueue`] exactly as on a plain
//!   connection; instead of sending it, [`Conn::tls_next_send`] encrypts up to [`WIRE_MAX`]
//!   bytes of it and returns the records as one `Send`. One send in flight, so the queue's
//!   back-pressure bounds still hold. Files are never queued as ranges on a TLS connection:
//!   the file task reads them through the backend in pieces instead of sendfile.
//! - **Close**: after the last response, `close_notify` goes out before the lingering close.
//! - **Errors**: a failed handshake closes only that connection. Plain HTTP on the TLS port
//!   (the first byte is a letter, not a TLS record) gets nginx's 400 "The plain HTTP request
//!   was sent to HTTPS port" in clear text, then a close.
//!
//! The session is rustls's unbuffered API (`crate::tls::Session`): ciphertext is decrypted
//! in place in the session's input buffer and plaintext encrypted straight into the send
//! buffer.
//!
//! [`OutQueue`]: crate::server::out::OutQueue

use std::io::Write;

use backends::{Body, Op, SendBuf};

use super::env::Env;
use super::{Conn, Flags, Phase};
use crate::server::out::Out;
use crate::server::task::Abort;
use crate::server::token::OpTag;

/// Ciphertext produced for one send at most (plaintext is taken from the queue until the
/// records reach this size).
const WIRE_MAX: usize = 64 * 1024;
/// Queued pieces smaller than this are gathered into one record rather than one each.
const GATHER: usize = 16 * 1024;

/// A connection's TLS state.
pub struct Tls {
    session: crate::tls::Session,
    /// A file piece's buffer, encrypted and free again: the file task's next read goes into it.
    pub plain_spare: Option<Vec<u8>>,
    /// `close_notify` (or a fatal alert) was queued.
    notified: bool,
}

impl Tls {
    /// A sent buffer, for the next records (of this response, or of the next one on the
    /// same connection).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.session.recycle(buf);
    }

    /// Drop the recycled buffer (the tick does it for a connection between requests, so an
    /// idle connection holds none a second later).
    pub fn release_spare(&mut self) {
        self.session.release_spare();
        self.plain_spare = None;
    }

    /// For a connection accepted on a TLS address.
    pub fn new(cfg: &std::sync::Arc<rustls::ServerConfig>) -> Result<Box<Tls>, rustls::Error> {
        Ok(Box::new(Tls {
            session: crate::tls::Session::new(cfg.clone())?,
            plain_spare: None,
            notified: false,
        }))
    }
}

/// nginx's answer to plain HTTP on an HTTPS port (its internal status 497, sent as 400).
const PLAIN_HTTP_BODY: &str = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>webserv</center>\r\n</body>\r\n</html>\r\n";

impl Conn {
    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Ciphertext received: feed it to rustls and keep the plaintext it yields.
    pub(super) fn tls_input(&mut self, b: &[u8], env: &mut Env) {
        if matches!(self.phase, Phase::Closing | Phase::Linger) || b.is_empty() {
            return;
        }
        if self.phase == Phase::Handshake && !self.flags.has(Flags::TLS_FED) {
            // A TLS connection starts with a handshake record (0x16); SSLv2's hello with 0x80.
            match b[0] {
                0x16 | 0x80 => {}
                b'A'..=b'Z' => return self.plain_http(env),
                _ => {
                    crate::info!("{}: not a TLS handshake; closing", self.io_ident());
                    self.close(Abort::Closing, env);
                    return;
                }
            }
        }
        self.flags.set(Flags::TLS_FED, true);
        let keep = self.keeps_input();
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut plain = Vec::new();
        if let Err(e) = tls.session.receive(b, keep, &mut plain) {
            self.tls_failed(&e, env);
            return;
        }
        let (established, peer_closed) = (tls.session.is_established(), tls.session.peer_closed());
        if self.phase == Phase::Handshake && established {
            crate::trace!("{}: TLS handshake done", self.io_ident());
            self.deadline = env.deadline(env.cfg.timeouts.header);
            self.set_phase(Phase::Idle, env);
        }
        self.tls_plaintext(plain, env);
        if peer_closed && !self.flags.has(Flags::EOF) {
            // close_notify: the client sends nothing more.
            self.flags.set(Flags::EOF, true);
            self.on_eof(env);
        }
    }

    /// Decrypted request bytes join the connection's input.
    fn tls_plaintext(&mut self, plain: Vec<u8>, env: &mut Env) {
        if plain.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            // A new request starts: its head must arrive within the header timeout.
            self.deadline = env.deadline(env.cfg.timeouts.header);
            self.set_phase(Phase::Head, env);
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() == 0 {
            if plain.capacity() <= 64 * 1024 {
                self.inbuf = plain;
                return;
            }
            self.inbuf = env.bufs.pop().unwrap_or_default();
        }
        self.inbuf.extend_from_slice(&plain);
    }

    /// The session failed: during the handshake its alert goes out before a lingering close;
    /// later the connection just closes.
    fn tls_failed(&mut self, e: &str, env: &mut Env) {
        crate::info!("{}: TLS: {e}; closing", self.io_ident());
        if self.phase == Phase::Handshake {
            if let Some(t) = self.tls.as_mut() {
                t.notified = true;
            }
            self.flags.set(Flags::CLOSE_AFTER, true);
            self.flags.set(Flags::CLOSE_WHEN_FLUSHED, true);
        } else {
            self.close(Abort::Closing, env);
        }
    }

    /// Plain HTTP on the TLS port: answer nginx's 400 in clear text and close.
    fn plain_http(&mut self, env: &mut Env) {
        crate::info!(
            "{}: plain HTTP request sent to HTTPS port; 400",
            self.io_ident()
        );
        self.tls = None;
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nServer: webserv\r\nDate: ");
        head.extend_from_slice(env.date);
        let _ = write!(
            head,
            "\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            PLAIN_HTTP_BODY.len()
        );
        head.extend_from_slice(PLAIN_HTTP_BODY.as_bytes());
        self.out.push_bytes(head);
        self.flags.set(Flags::CLOSE_AFTER, true);
        self.flags.set(Flags::CLOSE_WHEN_FLUSHED, true);
        self.set_phase(Phase::Idle, env);
    }

    /// The next send of a TLS connection: handshake records, then queued plaintext
    /// encrypted (up to [`WIRE_MAX`] of records).
    pub(super) fn tls_next_send(&mut self, env: &mut Env) -> Option<Op> {
        let id = self.io_ident();
        let keep = self.keeps_input();
        let tls = self.tls.as_mut()?;
        let q = &mut self.out;
        let mut plain = Vec::new();
        let mut freed: Option<Vec<u8>> = None;
        let r = tls.session.send(keep, &mut plain, &mut |w| {
            let mut gather: Vec<u8> = Vec::new();
            while w.len() + gather.len() < WIRE_MAX {
                match q.pop() {
                    Some(Out::Buf(b)) if b.len() < GATHER => {
                        gather.extend_from_slice(&b.head);
                        gather.extend_from_slice(b.body.as_slice());
                        if gather.len() >= GATHER {
                            w.encrypt(&gather);
                            gather.clear();
                        }
                    }
                    Some(Out::Buf(b)) => {
                        w.encrypt(&gather);
                        gather.clear();
                        w.encrypt(&b.head);
                        w.encrypt(b.body.as_slice());
                        if let Body::Owned(v) = b.body {
                            freed = Some(v);
                        }
                    }
                    Some(Out::File { .. }) => {
                        // Never queued on TLS (the file task reads instead of sendfile).
                        crate::error!("{id}: file range queued on a TLS connection");
                    }
                    None => break,
                }
            }
            w.encrypt(&gather);
        });
        if let Some(v) = freed.filter(|v| v.capacity() <= 1 << 20) {
            tls.plain_spare = Some(v);
        }
        let wire = match r {
            Ok(wire) => wire,
            Err(e) => {
                self.tls_failed(&e, env);
                return None;
            }
        };
        self.tls_plaintext(plain, env);
        if wire.is_empty() {
            return None;
        }
        Some(Op::Send {
            fd: self.fd,
            buf: SendBuf {
                head: wire,
                body: Body::Empty,
            },
        })
    }

    /// Before the lingering close: queue `close_notify` (true when a send went out for it).
    pub(super) fn tls_close_notify(&mut self, env: &mut Env) -> bool {
        let Some(tls) = self.tls.as_mut().filter(|t| !t.notified) else {
            return false;
        };
        tls.notified = true;
        let wire = tls
            .session
            .send(false, &mut Vec::new(), &mut |w| w.close_notify())
            .unwrap_or_default();
        if wire.is_empty() {
            return false;
        }
        self.flags.set(Flags::SENDING, true);
        let op = Op::Send {
            fd: self.fd,
            buf: SendBuf {
                head: wire,
                body: Body::Empty,
            },
        };
        env.be.submit(self.tok(OpTag::Send), op);
        true
    }

    /// A TLS listener's new connection: its session, or a close when it cannot be made.
    pub(super) fn tls_accept(&mut self, env: &mut Env) {
        let Some(cfg) = env.cfg.tls(self.local.get()) else {
            return;
        };
        match Tls::new(cfg) {
            Ok(t) => {
                self.tls = Some(t);
                if self.phase != Phase::Proxy {
                    self.set_phase(Phase::Handshake, env);
                }
            }
            Err(e) => {
                crate::error!("{}: TLS session: {e}", self.io_ident());
                self.close(Abort::Closing, env);
            }
        }
    }
}
