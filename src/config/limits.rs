//! `client_header_buffer_size SIZE` and `large_client_header_buffers NUMBER SIZE` (http level):
//! the request-head limits in nginx's terms, resolved to the parser's [`HeadLimits`].
//!
//! nginx reads a request line into the `client_header_buffer_size` buffer first and, when it
//! does not fit, into one of the large buffers: the longer of the two bounds a request line
//! (414). A field line must fit one large buffer, the header section NUMBER of them (431).

use super::error::{ConfigError, Diagnostics};
use super::settings::bad_value;
use super::tree::{Directive, Word};
use super::values;
use crate::http::request::{HeadLimits, MAX_HEAD};

/// The two directives as written, with where (for errors found once both are known).
#[derive(Default)]
pub(crate) struct HeadBuffers {
    client: Option<(usize, Word)>,
    large: Option<(usize, usize, Word)>,
}

impl HeadBuffers {
    /// Records one of the two directives (the caller has checked name, context and arity).
    pub fn apply(&mut self, d: &Directive) -> Result<(), ConfigError> {
        let duplicate = || {
            d.name
                .err(format!("\"{}\" directive is duplicate", d.name.text))
        };
        if d.name.text == "client_header_buffer_size" {
            if self.client.is_some() {
                return Err(duplicate());
            }
            self.client = Some((size(d, 0)?, d.name.clone()));
        } else {
            if self.large.is_some() {
                return Err(duplicate());
            }
            let n = values::number(&d.args[0].text)
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| bad_value(d, 0, ", it must be a number from 1 to 1024"))?;
            self.large = Some((n as usize, size(d, 1)?, d.name.clone()));
        }
        Ok(())
    }

    /// The limits; nginx's defaults (`1k`, `4 8k`) where a directive is absent. Settings the
    /// parser cannot address are an error at the directive (and the defaults are returned).
    pub fn limits(&self, diags: &mut Diagnostics) -> HeadLimits {
        let (number, size, at) = match &self.large {
            Some((n, s, w)) => (*n, *s, Some(w)),
            None => (4, 8 * 1024, None),
        };
        let first = self.client.as_ref().map_or(1024, |c| c.0);
        let line = first.max(size);
        let section = number.saturating_mul(size);
        if let Some(l) = HeadLimits::new(line, size, section) {
            return l;
        }
        if let Some(w) = at.or(self.client.as_ref().map(|c| &c.1)) {
            diags.push(w.err(format!(
                "the request line ({line} bytes) and the header section ({number} x {size} \
                 bytes) may take at most {MAX_HEAD} bytes together"
            )));
        }
        HeadLimits::DEFAULT
    }
}

/// A header buffer size: at least 1 byte, at most what a head may take.
fn size(d: &Directive, i: usize) -> Result<usize, ConfigError> {
    let v = values::size_or(&d.args[i].text).map_err(|b| bad_value(d, i, &b.hint("size")))?;
    match usize::try_from(v) {
        Ok(v) if (1..=MAX_HEAD).contains(&v) => Ok(v),
        _ => Err(bad_value(
            d,
            i,
            &format!(", it must be between 1 and {MAX_HEAD} bytes"),
        )),
    }
}
