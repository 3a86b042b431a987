//! Typed, generation-checked operation tokens.
//!
//! Every operation the loop submits carries a [`Tok`] packed into the backend's `u64` token:
//!
//! ```text
//!  63        36 35        16 15      8 7      0
//! +------------+------------+---------+--------+
//! | gen (28)   | slot (20)  | task (8)| op (8) |
//! +------------+------------+--------+--------+
//! ```
//!
//! - `op` says which operation of which owner this is ([`OpTag`]); it decides the route in
//!   `dispatch`, never a bare constant.
//! - `slot` + `gen` name the owner: a connection slot and its generation, a child-registry slot
//!   and its generation, or a listener index (generation 0). A slot's generation changes every
//!   time it is reused, so a completion that outlived its owner never reaches the next one.
//! - `task` is the owning task's sequence number on its connection (mod 256): an op of a task
//!   that completes after the next task started (the next request, or the GET a CGI's local
//!   redirect turned into) is recognised as stale.
//!
//! The fields do not share a bit, and [`Tok::decode`] refuses any value no [`Tok::encode`] made
//! (unknown op, [`backends::WAKE_TOKEN`]).

/// Generations use 28 bits; 0 is never a live connection's.
pub const GEN_MASK: u32 = (1 << 28) - 1;
/// Slots use 20 bits (about a million connections per loop).
pub const SLOT_MASK: u32 = (1 << 20) - 1;

/// What an operation is, and so who owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpTag {
    /// A listener's multishot accept (slot = listener index).
    Accept = 1,
    /// The loop's one-second tick.
    Tick = 2,
    /// A close nobody waits for: a connection refused at accept (slot/gen = a refusal
    /// counter, task 0), or a descriptor the open-file cache evicted (its close counter, task 1).
    RefuseClose = 3,
    /// A listener's accept cancelled at stop.
    AcceptCancel = 4,
    /// A write of the access log (slot = the log's generation).
    AccessWrite = 5,
    /// Connection I/O.
    Recv = 10,
    RecvCancel = 11,
    Send = 12,
    Close = 13,
    /// The hang-up watch armed while the receive is off for back-pressure during a request
    /// (issue 9), and its cancel.
    Hangup = 14,
    HangupCancel = 15,
    /// A file task: read of the next piece, and the close of its fd.
    FileRead = 20,
    FileClose = 21,
    /// A file task reading a directory for its listing off the loop's thread
    /// (`Op::ListDir`), and the cancel of it when the request ends first. A late listing
    /// holds only its directory fd (a duplicate) and its entries: dropped with it.
    ListDir = 22,
    ListDirCancel = 23,
    /// An upload task: write to its temp file.
    UploadWrite = 25,
    /// An upload task: close of its temp file's fd while a write may be in flight.
    UploadClose = 26,
    /// An upload task: the rename that commits a temp file, and the unlink that drops one (or
    /// a committed part of a multipart upload that failed later).
    UploadRename = 27,
    /// An upload task: the open that creates a temp file.
    UploadOpen = 24,
    UploadUnlink = 28,
    /// A DELETE: the unlink of its file.
    DeleteUnlink = 29,
    /// CGI pipes (write end of stdin, read ends of stdout and stderr) and their closes.
    CgiStdin = 30,
    CgiStdout = 31,
    CgiStderr = 32,
    CgiStdinClose = 33,
    CgiStdoutClose = 34,
    CgiStderrClose = 35,
    /// A child's exit (slot/gen = its child-registry entry).
    ChildExit = 40,
    /// A lookup task: the open that warms the kernel's caches off the loop's thread.
    LookupOpen = 45,
}

impl OpTag {
    fn from_u8(v: u8) -> Option<OpTag> {
        use OpTag::*;
        Some(match v {
            1 => Accept,
            2 => Tick,
            3 => RefuseClose,
            4 => AcceptCancel,
            5 => AccessWrite,
            10 => Recv,
            11 => RecvCancel,
            12 => Send,
            13 => Close,
            14 => Hangup,
            15 => HangupCancel,
            20 => FileRead,
            21 => FileClose,
            22 => ListDir,
            23 => ListDirCancel,
            25 => UploadWrite,
            26 => UploadClose,
            24 => UploadOpen,
            27 => UploadRename,
            28 => UploadUnlink,
            29 => DeleteUnlink,
            30 => CgiStdin,
            31 => CgiStdout,
            32 => CgiStderr,
            33 => CgiStdinClose,
            34 => CgiStdoutClose,
            35 => CgiStderrClose,
            40 => ChildExit,
            45 => LookupOpen,
            _ => return None,
        })
    }

    /// The name `--debug` lines use.
    pub fn name(self) -> &'static str {
        use OpTag::*;
        match self {
            Accept => "accept",
            Tick => "tick",
            RefuseClose => "refuse-close",
            AcceptCancel => "accept-cancel",
            AccessWrite => "access-log write",
            Recv => "recv",
            RecvCancel => "recv-cancel",
            Send => "send",
            Close => "close",
            Hangup => "hangup",
            HangupCancel => "hangup-cancel",
            FileRead => "file read",
            FileClose => "file close",
            ListDir => "list dir",
            ListDirCancel => "list dir cancel",
            UploadWrite => "upload write",
            UploadClose => "upload close",
            UploadOpen => "upload open",
            UploadRename => "upload rename",
            UploadUnlink => "upload unlink",
            DeleteUnlink => "delete unlink",
            CgiStdin => "stdin write",
            CgiStdout => "stdout read",
            CgiStderr => "stderr read",
            CgiStdinClose => "stdin close",
            CgiStdoutClose => "stdout close",
            CgiStderrClose => "stderr close",
            LookupOpen => "lookup open",
            ChildExit => "child exit",
        }
    }

    /// Ops that belong to a request's task rather than to the connection itself.
    pub fn is_task_op(self) -> bool {
        (self as u8) >= 20 && self != OpTag::ChildExit
    }
}

/// A decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    pub gen: u32,
    pub slot: u32,
    pub task: u8,
    pub op: OpTag,
}

impl Tok {
    pub fn new(gen: u32, slot: u32, task: u32, op: OpTag) -> Tok {
        Tok {
            gen: gen & GEN_MASK,
            slot: slot & SLOT_MASK,
            task: task as u8,
            op,
        }
    }

    pub fn encode(self) -> u64 {
        (u64::from(self.gen & GEN_MASK) << 36)
            | (u64::from(self.slot & SLOT_MASK) << 16)
            | (u64::from(self.task) << 8)
            | u64::from(self.op as u8)
    }

    pub fn decode(t: u64) -> Option<Tok> {
        if t == backends::WAKE_TOKEN {
            return None;
        }
        let op = OpTag::from_u8((t & 0xff) as u8)?;
        Some(Tok {
            gen: ((t >> 36) as u32) & GEN_MASK,
            slot: ((t >> 16) as u32) & SLOT_MASK,
            task: ((t >> 8) & 0xff) as u8,
            op,
        })
    }
}

/// The next generation for a slot: never 0, wraps within 28 bits.
pub fn next_gen(g: u32) -> u32 {
    let n = g.wrapping_add(1) & GEN_MASK;
    if n == 0 {
        1
    } else {
        n
    }
}

/// A slab of slots with generations: the one allocator for connections and children.
pub struct Slab<T> {
    items: Vec<Option<T>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slab<T> {
    /// An empty slab with room for `n` items before it grows: address space only until they
    /// are used, and a table that never grows by copying leaves no freed copies in the heap.
    pub fn with_room(n: usize) -> Self {
        Slab {
            items: Vec::with_capacity(n),
            gens: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            live: 0,
        }
    }

    /// Take a slot: returns (slot, its new generation). `make` builds the item from them.
    pub fn insert_with(&mut self, make: impl FnOnce(u32, u32) -> T) -> Option<(u32, u32)> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.items.len() > SLOT_MASK as usize {
                    return None;
                }
                self.items.push(None);
                self.gens.push(0);
                (self.items.len() - 1) as u32
            }
        };
        let gen = next_gen(self.gens[slot as usize]);
        self.gens[slot as usize] = gen;
        self.items[slot as usize] = Some(make(slot, gen));
        self.live += 1;
        Some((slot, gen))
    }

    /// The item in `slot` if its generation is `gen`.
    pub fn get_mut(&mut self, slot: u32, gen: u32) -> Option<&mut T> {
        let s = slot as usize;
        if self.gens.get(s).copied() != Some(gen) {
            return None;
        }
        self.items.get_mut(s).and_then(Option::as_mut)
    }

    pub fn get(&self, slot: u32, gen: u32) -> Option<&T> {
        let s = slot as usize;
        if self.gens.get(s).copied() != Some(gen) {
            return None;
        }
        self.items.get(s).and_then(Option::as_ref)
    }

    /// Free `slot` (if `gen` still names it) and return its item.
    pub fn remove(&mut self, slot: u32, gen: u32) -> Option<T> {
        let s = slot as usize;
        if self.gens.get(s).copied() != Some(gen) {
            return None;
        }
        let it = self.items.get_mut(s)?.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(it)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Every live (slot, gen) — a snapshot, so the caller may mutate while walking it.
    pub fn keys(&self) -> Vec<(u32, u32)> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.is_some())
            .map(|(i, _)| (i as u32, self.gens[i]))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_the_limits() {
        for op in [
            OpTag::Accept,
            OpTag::Recv,
            OpTag::ChildExit,
            OpTag::CgiStderrClose,
            OpTag::ListDir,
            OpTag::ListDirCancel,
        ] {
            for (gen, slot, req) in [(1, 0, 0), (GEN_MASK, SLOT_MASK, 255), (12345, 999, 7)] {
                let t = Tok::new(gen, slot, req, op);
                assert_eq!(Tok::decode(t.encode()), Some(t));
            }
        }
        assert_eq!(Tok::decode(backends::WAKE_TOKEN), None);
        assert_eq!(Tok::decode(0), None);
    }

    #[test]
    fn generations_never_zero_and_slots_reject_stale() {
        assert_eq!(next_gen(GEN_MASK), 1);
        let mut s: Slab<u32> = Slab::default();
        let (a, ga) = s.insert_with(|_, _| 1).unwrap();
        assert!(s.remove(a, ga).is_some());
        let (b, gb) = s.insert_with(|_, _| 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(ga, gb);
        assert!(s.get(a, ga).is_none());
        assert!(s.remove(a, ga).is_none());
        assert_eq!(s.get(b, gb), Some(&2));
    }
}
