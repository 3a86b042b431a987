//! One TLS session over rustls's unbuffered API (`UnbufferedServerConnection`): the caller owns
//! every buffer. Received ciphertext is appended to [`Session::incoming`] and decrypted there in
//! place; records to send are encoded or encrypted straight into one outgoing `Vec` that the
//! connection then hands to the backend as an ordinary send. No socket, no thread, no blocking:
//! the connection layer (`server/conn/tls.rs`) decides when to receive and when to send.

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, WriteTraffic};

/// A bound on state transitions handled in one call (each consumes input or produces output,
/// so a well-behaved session needs far fewer).
const STEPS: usize = 4096;

/// The outgoing records: `buf[..len]`. Bytes past `len` are stale but initialised, so a
/// recycled buffer is written over without being zeroed (or faulted in) again.
#[derive(Default)]
struct Wire {
    buf: Vec<u8>,
    len: usize,
}

impl Wire {
    /// `need` writable bytes after the records.
    fn room(&mut self, need: usize) -> &mut [u8] {
        if self.buf.len() < self.len + need {
            self.buf.resize(self.len + need, 0);
        }
        &mut self.buf[self.len..self.len + need]
    }

    fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// The records, in the buffer they were written in (none: the buffer stays for later).
    fn take(&mut self) -> Vec<u8> {
        if self.len == 0 {
            return Vec::new();
        }
        let mut b = std::mem::take(&mut self.buf);
        b.truncate(self.len);
        self.len = 0;
        b
    }
}

pub struct Session {
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet consumed (a partial record waits here for the rest).
    incoming: Vec<u8>,
    /// Records ready to send (handshake messages, alerts, tickets), in order.
    wire: Wire,
    established: bool,
    peer_closed: bool,
    /// A fatal error happened; nothing more is processed.
    failed: bool,
}

/// What the connection may write once the handshake is done: plaintext, encrypted on the
/// spot into the outgoing buffer, and `close_notify`.
pub struct Writer<'a, 'c> {
    w: &'a mut WriteTraffic<'c, ServerConnectionData>,
    out: &'a mut Wire,
    failed: bool,
}

impl Writer<'_, '_> {
    /// Encrypt `plain` into the outgoing records.
    pub fn encrypt(&mut self, plain: &[u8]) {
        if plain.is_empty() || self.failed {
            return;
        }
        // A record carries at most 16 KiB plus a header, tag and content type.
        let mut need = plain.len() + (plain.len() / 16384 + 1) * 64;
        for _ in 0..4 {
            match self.w.encrypt(plain, self.out.room(need)) {
                Ok(n) => {
                    self.out.commit(n);
                    return;
                }
                Err(EncryptError::InsufficientSize(s)) => need = s.required_size,
                Err(_) => break,
            }
        }
        self.failed = true;
    }

    /// Queue `close_notify`.
    pub fn close_notify(&mut self) {
        if let Ok(n) = self.w.queue_close_notify(self.out.room(64)) {
            self.out.commit(n);
        }
    }

    /// Ciphertext produced so far for this send.
    pub fn len(&self) -> usize {
        self.out.len
    }

    pub fn is_empty(&self) -> bool {
        self.out.len == 0
    }
}

/// Appends one encoded handshake or alert record to `out`.
fn encode(
    out: &mut Wire,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), String> {
    let mut need = 4096;
    for _ in 0..4 {
        match f(out.room(need)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("record does not fit".into())
}

impl Session {
    pub fn new(cfg: std::sync::Arc<rustls::ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(cfg)?,
            incoming: Vec::new(),
            wire: Wire::default(),
            established: false,
            peer_closed: false,
            failed: false,
        })
    }

    /// The handshake is complete.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// The client sent `close_notify`: no more data comes.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Records waiting to be sent.
    pub fn has_wire(&self) -> bool {
        self.wire.len > 0
    }

    /// A sent buffer comes back: the next records are written over it (no zeroing, no page
    /// faults for a large response's every piece). Kept only while nothing is waiting.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.wire.len == 0 && buf.capacity() > self.wire.buf.capacity() {
            self.wire.buf = buf;
        }
    }

    /// Drop a recycled buffer (an idle session holds none).
    pub fn release_spare(&mut self) {
        if self.wire.len == 0 {
            self.wire.buf = Vec::new();
        }
    }

    /// Ciphertext received: decrypt what it completes. Application data is appended to
    /// `plain` (dropped when `keep` is false).
    pub fn receive(&mut self, bytes: &[u8], keep: bool, plain: &mut Vec<u8>) -> Result<(), String> {
        self.incoming.extend_from_slice(bytes);
        self.run(keep, plain, None)
    }

    /// The next send: waiting records, then (once established) what `write` encrypts.
    /// Application data met on the way is appended to `plain`.
    pub fn send(
        &mut self,
        keep: bool,
        plain: &mut Vec<u8>,
        write: &mut dyn FnMut(&mut Writer),
    ) -> Result<Vec<u8>, String> {
        if self.failed {
            // Only the alert that ended it is left to send.
            return Ok(self.wire.take());
        }
        let r = self.run(keep, plain, Some(write));
        let wire = self.wire.take();
        r.map(|()| wire)
    }

    /// Drive the state machine until it waits for input (or, with `write`, until the
    /// connection has written what it had).
    fn run(
        &mut self,
        keep: bool,
        plain: &mut Vec<u8>,
        mut write: Option<&mut dyn FnMut(&mut Writer)>,
    ) -> Result<(), String> {
        if self.failed {
            return Err("session failed before".into());
        }
        let mut result = Ok(());
        for _ in 0..STEPS {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut stop = false;
            match status.state {
                Err(e) => {
                    result = Err(e.to_string());
                    stop = true;
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) if keep => plain.extend_from_slice(rec.payload),
                            Ok(_) => {}
                            Err(e) => {
                                result = Err(e.to_string());
                                stop = true;
                                break;
                            }
                        }
                    }
                }
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    stop = true;
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if let Err(m) = encode(&mut self.wire, |b| e.encode(b)) {
                        result = Err(m);
                        stop = true;
                    }
                }
                // The records are in `wire`, which the connection sends before anything
                // encrypted after them.
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::BlockedHandshake) => stop = true,
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    self.established = true;
                    if let Some(f) = write.take() {
                        let mut wr = Writer {
                            w: &mut w,
                            out: &mut self.wire,
                            failed: false,
                        };
                        f(&mut wr);
                        if wr.failed {
                            result = Err("encryption failed".into());
                        }
                    }
                    stop = true;
                }
                // Early data is not enabled; nothing else is expected.
                Ok(_) => stop = true,
            }
            self.incoming.drain(..discard.min(self.incoming.len()));
            if stop {
                break;
            }
        }
        if result.is_err() {
            self.failed = true;
            self.collect_alert();
        }
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            // An idle session holds no input buffer.
            self.incoming = Vec::new();
        }
        result
    }

    /// After an error: the fatal alert rustls queued, if any, into `wire`.
    fn collect_alert(&mut self) {
        for _ in 0..8 {
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode(&mut self.wire, |b| e.encode(b)).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => return,
            }
        }
    }
}
