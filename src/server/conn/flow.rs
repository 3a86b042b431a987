//! Making progress on a connection: parse and feed what is buffered, keep one send in flight,
//! and arm or cancel the receive by the back-pressure bounds (and, while it is off during a
//! request, the hang-up watch that still sees the client leave).

use super::Flags;
use backends::{Completion, Op};

use super::env::Env;
use super::{Conn, Phase, RecvState, IN_HIGH, OUT_HIGH};
use crate::server::out::Out;
use crate::server::task::{Abort, Step, Task};
use crate::server::token::OpTag;

/// Small queued buffers are merged into one send up to this size.
const COALESCE: usize = 64 * 1024;
/// A file range goes out by sendfile in pieces of this size (each restarts send_timeout).
const SENDFILE_PIECE: u64 = 4 << 20;

impl Conn {
    /// Make all the progress possible: parse, feed bodies, send; then (re)arm the receive.
    pub fn drive(&mut self, env: &mut Env) {
        let mut deferred = false;
        for _ in 0..64 {
            let a = self.advance(env);
            deferred = a && self.another_head_first();
            if deferred {
                // Pipelined requests: answer every buffered one before the first send, so
                // the batch goes out in one write instead of the first response alone and
                // then the rest.
                continue;
            }
            let p = self.pump(env);
            if !a && !p {
                break;
            }
        }
        if deferred {
            // The loop's bound cut a deep pipeline short of its send.
            self.pump(env);
        }
        self.update_recv(env);
    }

    /// Whether to parse the next buffered head before sending: the last request was answered
    /// whole (no request is in progress), more input waits, and the answers queued so far
    /// fit in one coalesced send.
    fn another_head_first(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Head)
            && !self.inbuf.is_empty()
            && self.out.bytes() < COALESCE
    }

    pub(super) fn advance(&mut self, env: &mut Env) -> bool {
        match self.phase {
            Phase::Closing | Phase::Linger | Phase::Handshake => false,
            Phase::Active => self.feed_body(env),
            Phase::Proxy => self.read_proxy_header(env),
            Phase::Idle | Phase::Head => {
                if self.flags.has(Flags::CLOSE_AFTER)
                    || self.flags.has(Flags::CLOSE_WHEN_FLUSHED)
                    || self.out.bytes() > OUT_HIGH
                {
                    return false;
                }
                if self.inbuf.is_empty() {
                    if self.flags.has(Flags::EOF)
                        && self.out.is_empty()
                        && !self.flags.has(Flags::SENDING)
                    {
                        self.close(Abort::ClientGone, env);
                        return true;
                    }
                    return false;
                }
                self.parse_head(env)
            }
        }
    }

    /// Keep one send in flight; when the queue is empty, let the task produce more.
    pub(super) fn pump(&mut self, env: &mut Env) -> bool {
        if self.flags.has(Flags::SENDING) || matches!(self.phase, Phase::Closing | Phase::Linger) {
            return false;
        }
        if self.tls.is_some() {
            if let Some(op) = self.tls_next_send(env) {
                self.flags.set(Flags::SENDING, true);
                env.be.submit(self.tok(OpTag::Send), op);
                return true;
            }
        } else if let Some(o) = self.out.pop() {
            let op = match o {
                Out::Buf(mut buf) => {
                    // Coalesce small queued pieces into one send (pipelining: one write),
                    // grown once to its final size (growing it piece by piece cost a
                    // realloc and fresh pages for every few responses).
                    // The batch is a buffer lent by the worker's pool (given back with the
                    // send's completion), and each piece's head buffer goes back to the heads
                    // pool as it is copied: pipelined requests allocate nothing.
                    let more = self.out.buf_run(COALESCE, buf.len());
                    if more > 0 {
                        let mut batch = env.take_batch();
                        batch.reserve(buf.len() + more);
                        batch.extend_from_slice(&buf.head);
                        batch.extend_from_slice(buf.body.as_slice());
                        env.give_head(std::mem::replace(&mut buf.head, batch));
                        buf.body = backends::Body::Empty;
                        while let Some(next) = self.out.pop_buf_if(COALESCE, buf.len()) {
                            buf.head.extend_from_slice(&next.head);
                            buf.head.extend_from_slice(next.body.as_slice());
                            env.give_head(next.head);
                        }
                    }
                    Op::Send { fd: self.fd, buf }
                }
                Out::File { fd, offset, len } => {
                    let piece = len.min(SENDFILE_PIECE);
                    if len > piece {
                        self.out.push_front(Out::File {
                            fd,
                            offset: offset + piece,
                            len: len - piece,
                        });
                    }
                    Op::SendFile {
                        fd: self.fd,
                        file: fd,
                        offset,
                        len: piece as usize,
                    }
                }
            };
            self.flags.set(Flags::SENDING, true);
            env.be.submit(self.tok(OpTag::Send), op);
            return true;
        }
        if self.phase == Phase::Active {
            let before = self.phase;
            let step = self.with_task(env, |task, cx| task.on_drained(cx));
            let moved = step != Step::Pending;
            self.handle(step, env);
            return moved || !self.out.is_empty() || self.phase != before;
        }
        if self.flags.has(Flags::CLOSE_WHEN_FLUSHED) {
            if !self.tls_close_notify(env) {
                self.linger(env);
            }
            return true;
        }
        false
    }

    pub(super) fn update_recv(&mut self, env: &mut Env) {
        let want = match self.phase {
            Phase::Closing => false,
            Phase::Linger => !self.flags.has(Flags::EOF),
            _ => {
                !self.flags.has(Flags::EOF)
                    && self.inbuf.len() < IN_HIGH
                    && self.out.bytes() < OUT_HIGH
            }
        };
        match (want, self.recv) {
            (true, RecvState::Off) => {
                self.recv = RecvState::Armed;
                env.be
                    .submit(self.tok(OpTag::Recv), Op::Recv { fd: self.fd });
            }
            (false, RecvState::Armed) if !self.flags.has(Flags::CANCEL_PENDING) => {
                // Back-pressure: no buffer is posted for this connection until it catches up.
                self.recv = RecvState::Cancelling;
                self.flags.set(Flags::CANCEL_PENDING, true);
                let target = self.tok(OpTag::Recv);
                env.be
                    .submit(self.tok(OpTag::RecvCancel), Op::Cancel { target });
            }
            _ => {}
        }
        // Issue 9: while a request runs with the receive off (back-pressure), the socket is
        // still watched for the client's FIN or reset; the watch goes when the receive is back.
        let watch = self.phase == Phase::Active
            && !self.flags.has(Flags::EOF)
            && self.recv != RecvState::Armed;
        match (watch, self.hangup) {
            (true, RecvState::Off) if !self.flags.has(Flags::HANGUP_CANCEL) => {
                self.hangup = RecvState::Armed;
                env.be
                    .submit(self.tok(OpTag::Hangup), Op::Hangup { fd: self.fd });
            }
            // A close covers the watch itself.
            (false, RecvState::Armed) if self.phase != Phase::Closing => {
                self.hangup = RecvState::Cancelling;
                self.flags.set(Flags::HANGUP_CANCEL, true);
                let target = self.tok(OpTag::Hangup);
                env.be
                    .submit(self.tok(OpTag::HangupCancel), Op::Cancel { target });
            }
            _ => {}
        }
    }

    /// The hang-up watch completed. Unless it was cancelled (or the receive saw the end of
    /// stream first), the client closed or reset the connection with input still unread:
    /// its request is abandoned and a CGI working for it is stopped.
    pub(super) fn on_hangup(&mut self, c: Completion, env: &mut Env) {
        let armed = self.hangup == RecvState::Armed;
        self.hangup = RecvState::Off;
        let cancelled = matches!(&c.result, Err(e) if e.raw_os_error() == Some(libc::ECANCELED));
        if armed && !cancelled && !self.flags.has(Flags::EOF) && self.phase != Phase::Closing {
            crate::info!("{}: client closed the connection", self.ident());
            self.flags.set(Flags::EOF, true);
            self.close(Abort::ClientGone, env);
        }
    }
}
