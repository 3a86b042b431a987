//! A connection's output queue: responses in request order, in memory or as file ranges.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use backends::SendBuf;

/// One piece of output.
#[derive(Debug)]
pub enum Out {
    /// Bytes in memory (a head, a body, a chunk).
    Buf(SendBuf),
    /// `len` bytes of file `fd` from `offset`, sent by sendfile(2). The fd belongs to the task
    /// that queued it, which closes it only after the queue has drained past it.
    File { fd: RawFd, offset: u64, len: u64 },
}

/// The queue and how many in-memory bytes it holds (the back-pressure measure).
/// The memory of an output queue, boxed (see [`OutQueue`]'s `q`).
pub type Queue = Box<VecDeque<Out>>;

#[derive(Default)]
pub struct OutQueue {
    /// Boxed, and lent from a pool while the connection has something to send: an idle
    /// connection's record holds one pointer, not a deque (issue 12: idle memory).
    q: Option<Queue>,
    /// In-memory bytes queued (saturating: the bound checks only need to know it is large).
    bytes: u32,
    /// Every byte ever queued (heads, bodies, file ranges), for the access log.
    pub total: u64,
    /// The status of the last final response head queued, for the access log.
    pub last_status: u16,
    /// The length of that head.
    pub last_head: u32,
    /// Final response heads ever queued (a request whose count moved has committed its answer).
    pub heads: u32,
}

/// The status code of a response head (`HTTP/1.1 200 …`), if `b` starts with one.
fn status_of(b: &[u8]) -> Option<u16> {
    let d = b.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    d.iter().try_fold(0u16, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
    })
}

impl OutQueue {
    pub fn push(&mut self, buf: SendBuf) {
        if buf.is_empty() {
            return;
        }
        if let Some(code) = status_of(&buf.head).filter(|c| *c >= 200) {
            self.last_status = code;
            self.last_head = buf.head.len() as u32;
            self.heads = self.heads.wrapping_add(1);
        }
        self.bytes = self
            .bytes
            .saturating_add(buf.len().min(u32::MAX as usize) as u32);
        self.total += buf.len() as u64;
        self.deque().push_back(Out::Buf(buf));
    }

    /// Rewrites the last final response head queued (still in the queue: the connection
    /// calls this right after the task that queued it), keeping the byte counts right.
    /// Returns false when there is none.
    pub fn patch_last_head(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some(b) = self
            .q
            .iter_mut()
            .flat_map(|q| q.iter_mut())
            .rev()
            .find_map(|o| match o {
                Out::Buf(b) if status_of(&b.head).is_some_and(|c| c >= 200) => Some(b),
                _ => None,
            })
        else {
            return false;
        };
        let before = b.head.len();
        f(&mut b.head);
        let after = b.head.len();
        self.last_head = after as u32;
        self.total = (self.total + after as u64).saturating_sub(before as u64);
        let bytes = u64::from(self.bytes) + after as u64;
        self.bytes = bytes.saturating_sub(before as u64).min(u64::from(u32::MAX)) as u32;
        true
    }

    pub fn push_bytes(&mut self, head: Vec<u8>) {
        self.push(SendBuf {
            head,
            body: backends::Body::Empty,
        });
    }

    pub fn push_file(&mut self, fd: RawFd, offset: u64, len: u64) {
        if len > 0 {
            self.total += len;
            self.deque().push_back(Out::File { fd, offset, len });
        }
    }

    pub fn push_front(&mut self, o: Out) {
        if let Out::Buf(b) = &o {
            self.bytes = self
                .bytes
                .saturating_add(b.len().min(u32::MAX as usize) as u32);
        }
        self.deque().push_front(o);
    }

    pub fn pop(&mut self) -> Option<Out> {
        let o = self.q.as_mut()?.pop_front()?;
        if let Out::Buf(b) = &o {
            self.bytes = self
                .bytes
                .saturating_sub(b.len().min(u32::MAX as usize) as u32);
        }
        Some(o)
    }

    /// The bytes of the in-memory buffers at the front of the queue that fit, with `have`,
    /// within `max_total` (what [`OutQueue::pop_buf_if`] will hand out, in order).
    pub fn buf_run(&self, max_total: usize, have: usize) -> usize {
        let mut total = have;
        for o in self.q.iter().flat_map(|q| q.iter()) {
            match o {
                Out::Buf(b) if total + b.len() <= max_total => total += b.len(),
                _ => break,
            }
        }
        total - have
    }

    /// The next in-memory buffer, if the front of the queue is one.
    pub fn pop_buf_if(&mut self, max_total: usize, have: usize) -> Option<SendBuf> {
        match self.q.as_ref().and_then(|q| q.front()) {
            Some(Out::Buf(b)) if have + b.len() <= max_total => match self.pop() {
                Some(Out::Buf(b)) => Some(b),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.q.as_ref().is_none_or(|q| q.is_empty())
    }

    /// In-memory bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Give the queue's memory back when it is empty (an idle connection holds none), to
    /// `pool` while it has room for it.
    pub fn release(&mut self, pool: &mut Vec<Queue>, keep: usize) {
        if self.is_empty() {
            if let Some(q) = self.q.take() {
                if pool.len() < keep {
                    pool.push(q);
                }
            }
        }
    }

    /// Take memory for the queue from `pool` if it has none (a request starts).
    pub fn adopt(&mut self, pool: &mut Vec<Queue>) {
        if self.q.is_none() {
            if let Some(q) = pool.pop() {
                debug_assert!(q.is_empty());
                self.q = Some(q);
            }
        }
    }

    /// The deque, made when the connection has none (a queue not adopted from the pool).
    fn deque(&mut self) -> &mut VecDeque<Out> {
        self.q.get_or_insert_with(Default::default)
    }

    /// Drop everything queued (the connection is closing); file fds stay with their tasks.
    pub fn clear(&mut self) {
        if let Some(q) = &mut self.q {
            q.clear();
        }
        self.bytes = 0;
    }
}
