//! nginx-style directory listings, produced in pieces.
//!
//! A listing is read off the loop's thread (`Op::ListDir`: names and `fstatat` facts, at most
//! `autoindex_max_entries` of them; the file task submits it, [`Pending`]) and sorted once, then rendered a piece at a time as the connection drains ([`Listing::next_piece`],
//! driven by the file task): the HTML of the whole listing is never in memory, and a client that
//! does not read holds only the entry table. The length is known before the first byte (each
//! line is rendered once to count it), so the response has a `Content-Length` for every client.
//!
//! The cap (default [`crate::config::DEFAULT_AUTOINDEX_MAX_ENTRIES`], nginx has none) bounds the
//! table and the loop time of one request: a directory anyone can fill (an upload store) costs at
//! most that many entries per request.

use std::os::fd::OwnedFd;
#[cfg(test)]
use std::os::fd::RawFd;

use crate::http::path::{html_escape, percent_encode_path};

struct Entry {
    name: String,
    is_dir: bool,
    size: u64,
    mtime: u64,
}

/// A listing whose directory is being read off the loop's thread (`Op::ListDir`, submitted by
/// the file task): the response head waits for the length.
pub struct Pending {
    /// A duplicate of the directory's fd, which the op takes.
    pub dir: Option<OwnedFd>,
    pub uri: String,
    pub max: usize,
    /// Whether a symlink in the directory is followed for its facts.
    pub follow: bool,
    /// The response head up to its `Content-Length`, which only the listing knows.
    pub head: Vec<u8>,
    /// A HEAD: the head alone is sent.
    pub head_only: bool,
}

impl Pending {
    /// The op that reads the directory (once: the fd goes with it).
    pub fn op(&mut self) -> Option<backends::Op> {
        let dir = self.dir.take()?;
        // Dot-files are not listed, so they do not count against the cap either (an upload
        // store's temp files would push its files out of the listing).
        let l = backends::ListDir::new(dir, self.max, self.follow).skip_hidden();
        Some(backends::Op::ListDir(l))
    }

    /// The whole response head and the listing to stream (none for a HEAD), from what the
    /// op read.
    pub fn finish(&mut self, read: backends::ListDir) -> (Vec<u8>, Option<Listing>) {
        let l = Listing::build(read.entries, read.truncated, &self.uri, self.max);
        let mut head = std::mem::take(&mut self.head);
        super::header_u64(&mut head, "Content-Length", l.len());
        super::finish(&mut head);
        (head, (!self.head_only).then_some(l))
    }
}

/// A listing being sent.
pub struct Listing {
    /// The head part (title, `../`), then the tail, rendered once (small).
    top: String,
    bottom: String,
    entries: Vec<Entry>,
    /// Next entry to render; `None` once the top is sent too.
    next: usize,
    top_sent: bool,
    len: u64,
}

fn render(e: &Entry, out: &mut String) {
    let slash = if e.is_dir { "/" } else { "" };
    let shown = format!("{}{slash}", e.name);
    let href = format!("{}{slash}", percent_encode_path(&e.name));
    let pad = 51usize.saturating_sub(shown.chars().count());
    let date = crate::log::access_time(e.mtime);
    // "26/Nov/2026:13:00:00 +0000" → "26-Nov-2026 13:00"
    let when = format!(
        "{}-{}-{} {}",
        &date[0..2],
        &date[3..6],
        &date[7..11],
        &date[12..17]
    );
    let size = if e.is_dir {
        "-".to_string()
    } else {
        e.size.to_string()
    };
    out.push_str(&format!(
        "<a href=\"{}\">{}</a>{:pad$} {} {:>19}\r\n",
        html_escape(&href),
        html_escape(&shown),
        "",
        when,
        size,
        pad = pad
    ));
}

impl Listing {
    /// Read the open directory `dir` (listed as `uri`), blocking: tests only — the server
    /// reads a directory off the loop with `Op::ListDir` ([`Pending`]) and builds from that.
    #[cfg(test)]
    pub fn read(dir: RawFd, uri: &str, max: usize, follow: bool) -> std::io::Result<Listing> {
        let (entries, truncated) = backends::util::list_dir(dir, max, follow, true)?;
        Ok(Listing::build(entries, truncated, uri, max))
    }

    /// The listing of `uri` from what an `Op::ListDir` read (at most `max` names, `truncated`
    /// when more were left): dot-files are not listed; directories first, then by name.
    pub fn build(read: Vec<backends::DirEntry>, truncated: bool, uri: &str, max: usize) -> Listing {
        let mut entries = Vec::with_capacity(read.len());
        for e in read {
            let name = e.name.to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            entries.push(Entry {
                name,
                is_dir: e.is_dir,
                size: e.size,
                mtime: e.mtime.max(0) as u64,
            });
        }
        entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
        let title = html_escape(uri);
        let top = format!(
            "<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n<h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"
        );
        let mut bottom = String::new();
        if truncated {
            bottom.push_str(&format!(
                "</pre><p>listing truncated at {max} entries (autoindex_max_entries)</p><pre>\r\n"
            ));
        }
        bottom.push_str("</pre><hr></body>\r\n</html>\r\n");
        let mut len = (top.len() + bottom.len()) as u64;
        let mut line = String::new();
        for e in &entries {
            line.clear();
            render(e, &mut line);
            len += line.len() as u64;
        }
        Listing {
            top,
            bottom,
            entries,
            next: 0,
            top_sent: false,
            len,
        }
    }

    /// The length of the whole listing in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next piece of about `max` bytes (whole lines), or `None` when all was produced.
    pub fn next_piece(&mut self, max: usize) -> Option<Vec<u8>> {
        if self.next > self.entries.len() {
            return None;
        }
        let mut out = String::with_capacity(max.min(64 * 1024) + 256);
        if !self.top_sent {
            out.push_str(&self.top);
            self.top_sent = true;
        }
        while self.next < self.entries.len() && out.len() < max {
            render(&self.entries[self.next], &mut out);
            self.next += 1;
        }
        if self.next == self.entries.len() && out.len() < max {
            out.push_str(&self.bottom);
            self.next += 1;
            self.entries = Vec::new();
        }
        Some(out.into_bytes())
    }

    /// The whole listing at once (tests, small callers).
    pub fn collect(mut self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len as usize);
        while let Some(p) = self.next_piece(64 * 1024) {
            all.extend_from_slice(&p);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn pieces_add_up_to_the_announced_length() {
        let d = std::env::temp_dir().join(format!("webserv-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for i in 0..300 {
            std::fs::write(d.join(format!("f<{i}>é.txt")), vec![b'x'; i]).unwrap();
        }
        std::fs::write(d.join(".hidden"), b"").unwrap();
        let fd = backends::util::open_dir(&d).unwrap();
        let l = Listing::read(fd.as_raw_fd(), "/d/", 1000, true).unwrap();
        let len = l.len();
        let mut l2 = Listing::read(fd.as_raw_fd(), "/d/", 1000, true).unwrap();
        let mut pieces = 0;
        let mut total = 0;
        while let Some(p) = l2.next_piece(1000) {
            pieces += 1;
            total += p.len() as u64;
        }
        assert!(pieces > 10, "{pieces}");
        assert_eq!(total, len);
        let text = String::from_utf8(l.collect()).unwrap();
        assert_eq!(text.len() as u64, len);
        assert!(text.contains("<a href=\"sub/\">sub/</a>"));
        assert!(text.contains("f&lt;7&gt;é.txt"));
        assert!(!text.contains("hidden") && !text.contains("truncated"));
        let capped = Listing::read(fd.as_raw_fd(), "/d/", 10, true).unwrap();
        let text = String::from_utf8(capped.collect()).unwrap();
        assert!(text.contains("listing truncated at 10 entries"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
