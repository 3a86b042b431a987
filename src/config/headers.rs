//! `add_header NAME VALUE [always]` and `expires TIME | epoch | max | off`
//! (<https://nginx.org/en/docs/http/ngx_http_headers_module.html>): parsed here, applied to a
//! response head by `server::headers`.

use super::error::ConfigError;
use super::settings::bad_value;
use super::tree::Directive;
use super::try_files::template_arg;
use super::Template;

/// One `add_header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHeader {
    /// INVARIANT: an RFC 9110 token.
    pub name: String,
    /// A value that expands to `""` adds nothing (nginx).
    pub value: Template,
    /// `always`: on every response, not only on 200, 201, 204, 206, 301, 302, 303, 304, 307,
    /// 308.
    pub always: bool,
}

/// `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// `epoch`: `Expires: Thu, 01 Jan 1970 00:00:01 GMT`, `Cache-Control: no-cache`.
    Epoch,
    /// `max`: `Expires: Thu, 31 Dec 2037 23:55:55 GMT`, `Cache-Control: max-age=315360000`.
    Max,
    /// `TIME` (negative allowed): `Expires` now + TIME; `Cache-Control: max-age=TIME`, or
    /// `no-cache` when TIME is negative.
    Secs(i64),
}

/// RFC 9110 §5.6.2 tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn parse_add_header(d: &Directive) -> Result<AddHeader, ConfigError> {
    if !is_token(&d.args[0].text) {
        return Err(bad_value(d, 0, ", a header name is a token (RFC 9110)"));
    }
    let value = template_arg(d, 1)?;
    let always = match d.args.get(2) {
        None => false,
        Some(a) if a.text == "always" => true,
        Some(_) => return Err(bad_value(d, 2, ", it must be \"always\"")),
    };
    Ok(AddHeader {
        name: d.args[0].text.clone(),
        value,
        always,
    })
}

/// `None` is `off`.
pub(crate) fn parse_expires(d: &Directive) -> Result<Option<Expires>, ConfigError> {
    let a = d.args[0].text.as_str();
    Ok(Some(match a {
        "off" => return Ok(None),
        "epoch" => Expires::Epoch,
        "max" => Expires::Max,
        _ => {
            let (neg, t) = match a.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, a.strip_prefix('+').unwrap_or(a)),
            };
            let secs = super::values::time(t)
                .map(|d| d.as_secs())
                .and_then(|s| i64::try_from(s).ok())
                .ok_or_else(|| {
                    bad_value(d, 0, ", it must be a time, \"epoch\", \"max\" or \"off\"")
                })?;
            Expires::Secs(if neg { -secs } else { secs })
        }
    }))
}
