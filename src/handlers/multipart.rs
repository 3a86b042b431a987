//! Streaming `multipart/form-data` parser (RFC 7578, framing from RFC 2046 §5.1.1).
//!
//! Bytes go in as they arrive, split anywhere; events come out through a callback. Memory is
//! bounded: the parser holds at most one feed slice of [`FEED_SLICE`] bytes plus the
//! delimiter length, or a part's header block of at most [`MAX_PART_HEADER`] bytes.

use std::fmt;
use std::io;

/// Most bytes of one part's header block (all its header lines).
pub const MAX_PART_HEADER: usize = 8 * 1024;
/// `feed` copies its input into the internal buffer this many bytes at a time.
pub const FEED_SLICE: usize = 8 * 1024;
/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// The boundary parameter of a `multipart/form-data` Content-Type, unquoted and checked
/// against RFC 2046 §5.1.1 (1–70 `bchars`, not ending in space). `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let b = params_iter(params.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
        .map(|(_, v)| v)?;
    let ok = !b.is_empty()
        && b.len() <= MAX_BOUNDARY
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c));
    ok.then(|| String::from_utf8_lossy(b).into_owned())
}

/// `; key=value` / `; key="quoted value"` parameters. A quoted value runs to the next `"`
/// without backslash escapes: browsers percent-encode `"` in names (HTML's form encoding),
/// and old clients send Windows paths with raw backslashes (RFC 7578 §4.2).
fn params_iter(mut s: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || loop {
        while let [b' ' | b'\t' | b';', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return None;
        }
        let eq = s.iter().position(|&b| b == b'=' || b == b';');
        let Some(eq) = eq.filter(|&i| s[i] == b'=') else {
            // A parameter without a value: skip it.
            let end = eq.unwrap_or(s.len());
            s = &s[end..];
            continue;
        };
        let key = trim(&s[..eq]);
        let rest = &s[eq + 1..];
        let rest = {
            let mut r = rest;
            while let [b' ' | b'\t', t @ ..] = r {
                r = t;
            }
            r
        };
        let value;
        if let [b'"', q @ ..] = rest {
            let end = q.iter().position(|&b| b == b'"').unwrap_or(q.len());
            value = &q[..end];
            s = &q[(end + 1).min(q.len())..];
        } else {
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            value = trim(&rest[..end]);
            s = &rest[end..];
        }
        return Some((key, value));
    })
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// What the parser reports, in order: for each part `Start`, any number of `Data`, `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// A part's headers (Content-Disposition's `name` and `filename`, and Content-Type).
    Start {
        name: Option<String>,
        filename: Option<String>,
        content_type: Option<String>,
    },
    /// Some of the part's content, binary-safe; chunking says nothing about the content.
    Data(&'a [u8]),
    End,
}

#[derive(Debug)]
pub enum MultipartError {
    /// Bad framing: text after a delimiter, a header line without `:`.
    Malformed,
    /// A part's header block exceeds [`MAX_PART_HEADER`].
    HeaderTooLarge,
    /// The body ended before the close delimiter `--boundary--`.
    Incomplete,
    /// The callback failed (e.g. writing the upload file).
    Io(io::Error),
}

impl MultipartError {
    /// The status for the client: the body is bad (400), or the server failed (500; 507 when
    /// the disk is full).
    pub fn status(&self) -> u16 {
        match self {
            MultipartError::Malformed
            | MultipartError::HeaderTooLarge
            | MultipartError::Incomplete => 400,
            MultipartError::Io(e) => crate::http::status::from_io(e),
        }
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::Malformed => f.write_str("malformed multipart body"),
            MultipartError::HeaderTooLarge => f.write_str("multipart part header too large"),
            MultipartError::Incomplete => f.write_str("multipart body without close delimiter"),
            MultipartError::Io(e) => write!(f, "multipart part: {e}"),
        }
    }
}

impl std::error::Error for MultipartError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter; discarded.
    Preamble,
    /// Just after `--boundary`: `--` (close) or padding then CRLF.
    AfterDelimiter,
    /// Transport padding (LWSP) before the CRLF ending a delimiter line.
    Padding,
    /// Collecting a part's header block, which starts with the delimiter line's CRLF.
    Headers,
    /// A part's content, up to the next `CRLF--boundary`.
    Body,
    /// After the close delimiter; discarded.
    Epilogue,
}

/// Incremental parser for one multipart body.
#[derive(Debug)]
pub struct MultipartParser {
    /// `CRLF--boundary`: the CRLF belongs to the delimiter, not the preceding content.
    delim: Vec<u8>,
    /// INVARIANT: bytes received and not yet reported or discarded; in `Body` and `Preamble`
    /// after each step shorter than `delim`, in `Headers` at most `MAX_PART_HEADER + 4`
    /// after each step (plus one feed slice while stepping).
    buf: Vec<u8>,
    state: State,
    /// In `Headers`: where to resume searching for the empty line.
    scan: usize,
}

impl MultipartParser {
    /// `boundary` as returned by [`boundary`] (without the leading `--`).
    pub fn new(boundary: &str) -> MultipartParser {
        let mut delim = Vec::with_capacity(boundary.len() + 4);
        delim.extend_from_slice(b"\r\n--");
        delim.extend_from_slice(boundary.as_bytes());
        MultipartParser {
            // The first delimiter may open the body with no CRLF before it (RFC 2046 §5.1.1):
            // a virtual CRLF lets one search find it either way.
            buf: b"\r\n".to_vec(),
            delim,
            state: State::Preamble,
            scan: 0,
        }
    }

    /// Whether the close delimiter has been seen (the rest is epilogue).
    pub fn is_done(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Take the next body bytes, reporting events through `on`.
    pub fn feed(
        &mut self,
        data: &[u8],
        on: &mut impl FnMut(Part<'_>) -> io::Result<()>,
    ) -> Result<(), MultipartError> {
        for slice in data.chunks(FEED_SLICE) {
            if self.state == State::Epilogue {
                return Ok(());
            }
            self.buf.extend_from_slice(slice);
            self.step(on)?;
        }
        Ok(())
    }

    /// The body has ended: an error unless the close delimiter came.
    pub fn finish(&mut self) -> Result<(), MultipartError> {
        if self.state == State::Epilogue {
            Ok(())
        } else {
            Err(MultipartError::Incomplete)
        }
    }

    fn step(
        &mut self,
        on: &mut impl FnMut(Part<'_>) -> io::Result<()>,
    ) -> Result<(), MultipartError> {
        let io = MultipartError::Io;
        loop {
            match self.state {
                State::Preamble => match find(&self.buf, &self.delim) {
                    Some(i) => {
                        self.buf.drain(..i + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delim.len() - 1;
                        let cut = self.buf.len().saturating_sub(keep);
                        self.buf.drain(..cut);
                        return Ok(());
                    }
                },
                State::AfterDelimiter => match self.buf.as_slice() {
                    [] | [b'-'] => return Ok(()),
                    [b'-', b'-', ..] => {
                        self.buf = Vec::new();
                        self.state = State::Epilogue;
                        return Ok(());
                    }
                    [b'-', ..] => return Err(MultipartError::Malformed),
                    _ => self.state = State::Padding,
                },
                State::Padding => {
                    let pad = self
                        .buf
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    self.buf.drain(..pad);
                    match self.buf.as_slice() {
                        [] | [b'\r'] => return Ok(()),
                        [b'\r', b'\n', ..] => {
                            // Keep the CRLF: the header block search starts on it.
                            self.scan = 0;
                            self.state = State::Headers;
                        }
                        _ => return Err(MultipartError::Malformed),
                    }
                }
                State::Headers => match find(&self.buf[self.scan..], b"\r\n\r\n") {
                    Some(i) => {
                        let end = self.scan + i;
                        if end > MAX_PART_HEADER {
                            return Err(MultipartError::HeaderTooLarge);
                        }
                        let start = part_start(&self.buf[2..end + 2])?;
                        on(start).map_err(io)?;
                        self.buf.drain(..end + 4);
                        self.state = State::Body;
                    }
                    None if self.buf.len() > MAX_PART_HEADER + 4 => {
                        return Err(MultipartError::HeaderTooLarge)
                    }
                    None => {
                        self.scan = self.buf.len().saturating_sub(3);
                        return Ok(());
                    }
                },
                State::Body => match find(&self.buf, &self.delim) {
                    Some(i) => {
                        if i > 0 {
                            on(Part::Data(&self.buf[..i])).map_err(io)?;
                        }
                        on(Part::End).map_err(io)?;
                        self.buf.drain(..i + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Hold back only a tail that could begin a delimiter.
                        let keep = (1..self.delim.len().min(self.buf.len() + 1))
                            .rev()
                            .find(|&k| self.buf.ends_with(&self.delim[..k]))
                            .unwrap_or(0);
                        let cut = self.buf.len() - keep;
                        if cut > 0 {
                            on(Part::Data(&self.buf[..cut])).map_err(io)?;
                            self.buf.drain(..cut);
                        }
                        return Ok(());
                    }
                },
                State::Epilogue => {
                    self.buf.clear();
                    return Ok(());
                }
            }
        }
    }
}

/// First index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from
            + hay[from..=hay.len() - needle.len()]
                .iter()
                .position(|&b| b == first)?;
        if &hay[i + 1..i + needle.len()] == rest {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Parse a part's header lines (each ending in CRLF) into a `Part::Start`.
fn part_start(block: &[u8]) -> Result<Part<'static>, MultipartError> {
    let (mut name, mut filename, mut content_type) = (None, None, None);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(MultipartError::Malformed)?;
        let (key, value) = (trim(&line[..colon]), trim(&line[colon + 1..]));
        if key.is_empty() || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(MultipartError::Malformed);
        }
        if key.eq_ignore_ascii_case(b"content-disposition") {
            let params = value.splitn(2, |&b| b == b';').nth(1).unwrap_or(b"");
            for (k, v) in params_iter(params) {
                if k.eq_ignore_ascii_case(b"name") {
                    name = Some(text(v));
                } else if k.eq_ignore_ascii_case(b"filename") {
                    filename = Some(text(v));
                }
            }
        } else if key.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(text(value));
        }
    }
    Ok(Part::Start {
        name,
        filename,
        content_type,
    })
}

/// Unicode general category Cf (format characters: bidi overrides, zero-width spaces and
/// joiners, BOM, tags…), as of Unicode 15. They are invisible, so a name holding one shows as
/// something else (`invoice\u{202e}fdp.exe` reads "invoiceexe.pdf").
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A safe file name from a client-supplied one: the base name only (after the last `/` or
/// `\`, since Windows clients send full paths), control and format (Cf) characters removed,
/// then every leading dot *and* white space (Unicode, so U+3000 too) removed — repeatedly, so
/// `" .."` or `". ."` cannot leave a `..` or a dot-file — and trailing white space; at most
/// 255 bytes keeping a short extension. `None` when nothing usable is left: the caller then
/// generates a name (never joins the raw one).
pub fn sanitize_filename(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = base
        .chars()
        .filter(|&c| !c.is_control() && !is_format(c))
        .collect();
    let clean = clean
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    if clean.is_empty() {
        return None;
    }
    const MAX: usize = 255;
    if clean.len() <= MAX {
        return Some(clean.to_owned());
    }
    // Too long: cut the stem, keep an extension of reasonable length.
    let ext = match clean.rfind('.') {
        Some(i) if clean.len() - i <= 16 => &clean[i..],
        _ => "",
    };
    let stem = &clean[..clean.len() - ext.len()];
    let mut cut = MAX - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}{}", &stem[..cut], ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Start(Option<String>, Option<String>, Option<String>),
        Data(Vec<u8>),
        End,
    }

    /// Run `chunks` through a parser; adjacent Data events are merged.
    fn run(boundary: &str, chunks: &[&[u8]]) -> Result<Vec<Ev>, MultipartError> {
        let mut p = MultipartParser::new(boundary);
        let mut evs: Vec<Ev> = Vec::new();
        let mut on = |part: Part<'_>| {
            assert!(p_len_ok(&part));
            match part {
                Part::Start {
                    name,
                    filename,
                    content_type,
                } => evs.push(Ev::Start(name, filename, content_type)),
                Part::Data(d) => {
                    assert!(!d.is_empty());
                    match evs.last_mut() {
                        Some(Ev::Data(v)) => v.extend_from_slice(d),
                        _ => evs.push(Ev::Data(d.to_vec())),
                    }
                }
                Part::End => evs.push(Ev::End),
            }
            Ok(())
        };
        for c in chunks {
            p.feed(c, &mut on)?;
            assert!(p.buf.len() <= MAX_PART_HEADER + 4 + p.delim.len());
        }
        p.finish()?;
        Ok(evs)
    }

    fn p_len_ok(part: &Part<'_>) -> bool {
        !matches!(part, Part::Data(d) if d.len() > FEED_SLICE + MAX_BOUNDARY + 4)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    const B: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn two_files() -> (Vec<u8>, Vec<Ev>) {
        let bin1: Vec<u8> = (0..=255u8)
            .chain(*b"\r\n--")
            .chain(B.bytes().take(10))
            .chain(*b"\r\n\r\n\0\r")
            .collect();
        let bin2: Vec<u8> = b"\r\n-\r\n--\r"
            .iter()
            .chain(&[0u8, 1, 2])
            .copied()
            .collect();
        let mut body = Vec::new();
        body.extend_from_slice(b"preamble text\r\n--");
        body.extend_from_slice(B.as_bytes());
        body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello");
        body.extend_from_slice(b"\r\n--");
        body.extend_from_slice(B.as_bytes());
        body.extend_from_slice(
            b" \t\r\ncontent-disposition: form-data; name=\"f1\"; filename=\"a b.bin\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n",
        );
        body.extend_from_slice(&bin1);
        body.extend_from_slice(b"\r\n--");
        body.extend_from_slice(B.as_bytes());
        body.extend_from_slice(
            b"\r\nContent-Disposition: form-data; filename=C:\\x\\y.dat; name=f2\r\n\r\n",
        );
        body.extend_from_slice(&bin2);
        body.extend_from_slice(b"\r\n--");
        body.extend_from_slice(B.as_bytes());
        body.extend_from_slice(b"--\r\nepilogue --");
        body.extend_from_slice(B.as_bytes());
        let want = vec![
            Ev::Start(s("title"), None, None),
            Ev::Data(b"hello".to_vec()),
            Ev::End,
            Ev::Start(s("f1"), s("a b.bin"), s("application/octet-stream")),
            Ev::Data(bin1),
            Ev::End,
            Ev::Start(s("f2"), s("C:\\x\\y.dat"), None),
            Ev::Data(bin2),
            Ev::End,
        ];
        (body, want)
    }

    #[test]
    fn split_at_every_position() {
        let (body, want) = two_files();
        assert_eq!(run(B, &[&body]).unwrap(), want);
        for cut in 0..=body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(run(B, &[a, b]).unwrap(), want, "cut {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(B, &bytes).unwrap(), want);
        let threes: Vec<&[u8]> = body.chunks(3).collect();
        assert_eq!(run(B, &threes).unwrap(), want);
    }

    #[test]
    fn large_part_streams_with_bounded_buffer() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n").into_bytes();
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{B}--").as_bytes());
        let want = vec![Ev::Start(s("f"), None, None), Ev::Data(content), Ev::End];
        assert_eq!(run(B, &[&body]).unwrap(), want);
        let pieces: Vec<&[u8]> = body.chunks(65_536).collect();
        assert_eq!(run(B, &pieces).unwrap(), want);
    }

    #[test]
    fn empty_parts_and_no_preamble() {
        let body = format!(
            "--{B}\r\n\r\n\r\n--{B}\r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--{B}--"
        );
        assert_eq!(
            run(B, &[body.as_bytes()]).unwrap(),
            vec![
                Ev::Start(None, None, None),
                Ev::End,
                Ev::Start(s("e"), None, None),
                Ev::End
            ]
        );
        // A form with no fields at all.
        assert_eq!(run(B, &[format!("--{B}--").as_bytes()]).unwrap(), vec![]);
    }

    #[test]
    fn missing_close_delimiter() {
        let (body, _) = two_files();
        let end = body.len() - (b"--\r\nepilogue --".len() + 2 * B.len() + 4);
        for cut in [0, 5, end - 3, end] {
            assert!(
                matches!(run(B, &[&body[..cut]]), Err(MultipartError::Incomplete)),
                "cut {cut}"
            );
        }
        assert!(matches!(
            run(B, &[b"no boundary here"]),
            Err(MultipartError::Incomplete)
        ));
    }

    #[test]
    fn malformed() {
        for body in [
            format!("--{B}x\r\n\r\n--{B}--"),
            format!("--{B}-x\r\n\r\n--{B}--"),
            format!("--{B}\r\nno colon\r\n\r\nv\r\n--{B}--"),
            format!("--{B}\n\n--{B}--"),
        ] {
            let e = run(B, &[body.as_bytes()]).unwrap_err();
            assert!(matches!(e, MultipartError::Malformed), "{body:?}: {e}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn header_too_long() {
        let long = format!(
            "--{B}\r\nX-Pad: {}\r\n\r\nv\r\n--{B}--",
            "a".repeat(MAX_PART_HEADER)
        );
        let e = run(B, &[long.as_bytes()]).unwrap_err();
        assert!(matches!(e, MultipartError::HeaderTooLarge), "{e}");
        // Without an end, in small pieces, it still stops at the limit.
        let endless = format!("--{B}\r\nX-Pad: {}", "a".repeat(4 * MAX_PART_HEADER));
        let pieces: Vec<&[u8]> = endless.as_bytes().chunks(100).collect();
        assert!(matches!(
            run(B, &pieces),
            Err(MultipartError::HeaderTooLarge)
        ));
        // Just under the limit is fine.
        let pad = MAX_PART_HEADER - "X-Pad: \r\n".len();
        let ok = format!("--{B}\r\nX-Pad: {}\r\n\r\nv\r\n--{B}--", "a".repeat(pad));
        assert!(run(B, &[ok.as_bytes()]).is_ok());
    }

    #[test]
    fn callback_error_stops() {
        let (body, _) = two_files();
        let mut p = MultipartParser::new(B);
        let e = p
            .feed(&body, &mut |part| match part {
                Part::Data(_) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                _ => Ok(()),
            })
            .unwrap_err();
        assert_eq!(e.status(), 507);
    }

    #[test]
    fn boundary_param() {
        let cases: &[(&str, Option<&str>)] = &[
            ("multipart/form-data; boundary=abc", Some("abc")),
            ("Multipart/Form-Data;BOUNDARY=\"a b:c\"", Some("a b:c")),
            (
                "multipart/form-data; charset=utf-8; boundary=\"x=y\"",
                Some("x=y"),
            ),
            // A quoted `;` is read as part of the value, and then is no bchar.
            ("multipart/form-data; boundary=\"x;y\"; a=b", None),
            ("multipart/form-data ; boundary = q ", Some("q")),
            ("multipart/form-data", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"\"", None),
            ("multipart/form-data; boundary=\"ends \"", None),
            ("multipart/form-data; boundary=bad<char>", None),
            ("multipart/mixed; boundary=abc", None),
            ("text/plain; boundary=abc", None),
        ];
        for (ct, want) in cases {
            assert_eq!(boundary(ct).as_deref(), *want, "{ct}");
        }
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
        assert!(boundary(&format!("multipart/form-data; boundary={}", "b".repeat(70))).is_some());
    }

    #[test]
    fn sanitize() {
        let cases: &[(&str, Option<&str>)] = &[
            ("photo.jpg", Some("photo.jpg")),
            ("/etc/passwd", Some("passwd")),
            ("C:\\Users\\me\\doc.txt", Some("doc.txt")),
            ("../../x.txt", Some("x.txt")),
            ("..", None),
            (".", None),
            ("", None),
            ("dir/", None),
            ("...", None),
            (".htaccess", Some("htaccess")),
            ("..hidden", Some("hidden")),
            ("a\u{0}b\r\nc.txt", Some("abc.txt")),
            ("\u{7f}", None),
            ("réssumé 1.pdf", Some("réssumé 1.pdf")),
            (" ..", None),
            (" .", None),
            ("\u{3000}..", None),
            ("x/ ..", None),
            (". .", None),
            ("\u{200b}..", None),
            (" .htaccess", Some("htaccess")),
            ("invoice\u{202e}fdp.exe", Some("invoicefdp.exe")),
            ("a\u{feff}b\u{200d}.txt ", Some("ab.txt")),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_filename(raw).as_deref(), *want, "{raw:?}");
        }
        let long = format!("{}.tar.gz", "é".repeat(300));
        let got = sanitize_filename(&long).unwrap();
        assert!(got.len() <= 255 && got.ends_with(".gz"), "{}", got.len());
        let long = "x".repeat(300);
        assert_eq!(sanitize_filename(&long).unwrap().len(), 255);
    }
}
