//! The size limits of a request head: nginx's `client_header_buffer_size` and
//! `large_client_header_buffers NUMBER SIZE`, as the parser applies them (414 for the request
//! line, 431 for a field line or the header section, RFC 6585 §5).

/// Default longest request line, counted with its line terminator and with any empty lines
/// before it (RFC 9112 §3: "at least 8000 octets" recommended; nginx's 8k). Longer → 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Default largest header section (field lines plus the final empty line; nginx's `4 8k`).
/// Larger → 431 (RFC 6585 §5).
pub const MAX_HEADER_SECTION: usize = 32 * 1024;
/// The largest head any [`HeadLimits`] allows: every offset into it fits a u16.
pub const MAX_HEAD: usize = u16::MAX as usize;

const _: () = assert!(MAX_REQUEST_LINE + MAX_HEADER_SECTION <= MAX_HEAD);

/// Size limits of one request head, in nginx's terms (`large_client_header_buffers NUMBER
/// SIZE`: a request line or a field line must fit one buffer of SIZE bytes, the header section
/// NUMBER of them).
///
/// INVARIANT: `request_line + section <= MAX_HEAD`, `field_line <= section`, none is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    request_line: usize,
    field_line: usize,
    section: usize,
}

impl HeadLimits {
    /// nginx's defaults: `large_client_header_buffers 4 8k`.
    pub const DEFAULT: HeadLimits = HeadLimits {
        request_line: MAX_REQUEST_LINE,
        field_line: MAX_REQUEST_LINE,
        section: MAX_HEADER_SECTION,
    };

    /// Limits for a request line of at most `request_line` bytes (→ 414), field lines of at
    /// most `field_line` bytes and a header section of at most `section` bytes (→ 431); each
    /// counted with its line terminators. `None` when they break the invariant.
    pub fn new(request_line: usize, field_line: usize, section: usize) -> Option<HeadLimits> {
        let ok = request_line > 0
            && field_line > 0
            && field_line <= section
            && request_line.checked_add(section)? <= MAX_HEAD;
        ok.then_some(HeadLimits {
            request_line,
            field_line,
            section,
        })
    }

    pub fn request_line(&self) -> usize {
        self.request_line
    }

    pub fn field_line(&self) -> usize {
        self.field_line
    }

    pub fn section(&self) -> usize {
        self.section
    }
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits::DEFAULT
    }
}
