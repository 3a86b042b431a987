//! nginx-style directory listings.

use std::os::fd::RawFd;

use crate::http::path::{html_escape, percent_encode_path};

/// An nginx-style directory listing of the open directory `dir`: names escaped for HTML and
/// percent-encoded in links, at most `max` entries read (then a line says the listing was
/// truncated). Entries are `fstatat`'d in the directory (following a symlink only when
/// `follow`), never opened, so a FIFO in it costs nothing.
pub fn autoindex(dir: RawFd, uri: &str, max: usize, follow: bool) -> std::io::Result<Vec<u8>> {
    let mut entries: Vec<(String, bool, u64, u64)> = Vec::new();
    let (names, truncated) = backends::util::read_dir_fd(dir, max)?;
    for os in names {
        let name = os.to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(m) = backends::util::fstatat(dir, &os, follow) else {
            continue;
        };
        entries.push((name, m.is_dir(), m.size, m.mtime.0.max(0) as u64));
    }
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let title = html_escape(uri);
    let mut out = format!(
        "<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n<h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"
    );
    for (name, is_dir, size, mtime) in entries {
        let slash = if is_dir { "/" } else { "" };
        let shown = format!("{name}{slash}");
        let href = format!("{}{slash}", percent_encode_path(&name));
        let pad = 51usize.saturating_sub(shown.chars().count());
        let date = crate::log::access_time(mtime);
        // "26/Nov/2026:13:00:00 +0000" → "26-Nov-2026 13:00"
        let when = format!(
            "{}-{}-{} {}",
            &date[0..2],
            &date[3..6],
            &date[7..11],
            &date[12..17]
        );
        let size = if is_dir {
            "-".to_string()
        } else {
            size.to_string()
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
    if truncated {
        out.push_str(&format!(
            "</pre><p>listing truncated at {max} entries (autoindex_max_entries)</p><pre>\r\n"
        ));
    }
    out.push_str("</pre><hr></body>\r\n</html>\r\n");
    Ok(out.into_bytes())
}
