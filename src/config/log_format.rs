//! `log_format NAME [escape=default|json|none] STRING...` and the options of
//! `access_log PATH [FORMAT] [buffer=SIZE] [flush=TIME]`
//! (<https://nginx.org/en/docs/http/ngx_http_log_module.html>).

use std::time::Duration;

use super::error::ConfigError;
use super::settings::bad_value;
use super::template::{Piece, Template};
use super::tree::Directive;

/// How variable values are escaped in a line (literal text never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEscape {
    /// `"`, `\`, control bytes and bytes ≥ 0x7f as `\xHH`; an empty value is `-`.
    Default,
    /// JSON string escaping; an empty value stays empty.
    Json,
    /// As is.
    None,
}

/// A named format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub name: String,
    pub escape: LogEscape,
    pub template: Template,
    /// The request headers its `$http_NAME`s read (lower case, `-`), kept with each request.
    pub headers: Vec<String>,
}

/// nginx's predefined `combined`.
pub const COMBINED: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
                            $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

impl LogFormat {
    fn new(name: &str, escape: LogEscape, template: Template) -> LogFormat {
        let mut headers: Vec<String> = Vec::new();
        for p in template.pieces() {
            if let Piece::Http(h) = p {
                if !headers.contains(h) {
                    headers.push(h.clone());
                }
            }
        }
        LogFormat {
            name: name.to_string(),
            escape,
            template,
            headers,
        }
    }

    pub fn combined() -> LogFormat {
        let t = Template::parse_log(COMBINED).unwrap_or_default();
        LogFormat::new("combined", LogEscape::Default, t)
    }
}

pub(crate) fn parse_log_format(d: &Directive) -> Result<LogFormat, ConfigError> {
    let name = &d.args[0].text;
    let mut first = 1;
    let mut escape = LogEscape::Default;
    if let Some(e) = d.args[1].text.strip_prefix("escape=") {
        escape = match e {
            "default" => LogEscape::Default,
            "json" => LogEscape::Json,
            "none" => LogEscape::None,
            _ => {
                return Err(bad_value(
                    d,
                    1,
                    ", it must be escape=default, escape=json or escape=none",
                ))
            }
        };
        first = 2;
    }
    if first >= d.args.len() {
        return Err(d
            .name
            .err("invalid number of arguments in \"log_format\" directive"));
    }
    let mut text = String::new();
    for i in first..d.args.len() {
        // Each string is checked alone first, so an error points into it.
        Template::parse_log(&d.args[i].text).map_err(|e| {
            d.args[i].err_at_char(e.at, format!("{} in \"log_format\" directive", e.message))
        })?;
        text.push_str(&d.args[i].text);
    }
    let t = Template::parse_log(&text)
        .map_err(|e| d.args[first].err(format!("{} in \"log_format\" directive", e.message)))?;
    Ok(LogFormat::new(name, escape, t))
}

/// `access_log PATH [FORMAT] [buffer=SIZE] [flush=TIME]`: the format's name and the buffering.
pub(crate) struct AccessOpts {
    pub format: Option<(String, usize)>,
    pub buffer: Option<usize>,
    pub flush: Option<Duration>,
}

pub(crate) fn parse_access_opts(d: &Directive) -> Result<AccessOpts, ConfigError> {
    let mut o = AccessOpts {
        format: None,
        buffer: None,
        flush: None,
    };
    for (i, a) in d.args.iter().enumerate().skip(1) {
        if let Some(v) = a.text.strip_prefix("buffer=") {
            let n = super::values::size(v)
                .filter(|&n| n > 0 && n <= 64 << 20)
                .ok_or_else(|| bad_value(d, i, ", buffer is a size from 1 to 64m"))?;
            o.buffer = Some(n as usize);
        } else if let Some(v) = a.text.strip_prefix("flush=") {
            let t = super::values::time(v)
                .filter(|t| !t.is_zero())
                .ok_or_else(|| bad_value(d, i, ""))?;
            o.flush = Some(t);
        } else if i == 1 && !a.text.contains('=') {
            o.format = Some((a.text.clone(), i));
        } else {
            return Err(bad_value(d, i, ""));
        }
    }
    if o.flush.is_some() && o.buffer.is_none() {
        // nginx: flush without buffer (or gzip) is an error.
        return Err(d
            .name
            .err("\"flush\" without \"buffer\" in \"access_log\" directive"));
    }
    Ok(o)
}

/// Appends `v` escaped per `esc`.
pub fn escape_into(esc: LogEscape, v: &str, out: &mut String) {
    use std::fmt::Write as _;
    match esc {
        LogEscape::None => out.push_str(v),
        LogEscape::Default if v.is_empty() => out.push('-'),
        LogEscape::Default => {
            for b in v.bytes() {
                if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
                    let _ = write!(out, "\\x{b:02X}");
                } else {
                    out.push(b as char);
                }
            }
        }
        LogEscape::Json => {
            for c in v.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let cases = [
            (
                LogEscape::Default,
                "a\"b\\c\u{1}é",
                "a\\x22b\\x5Cc\\x01\\xC3\\xA9",
            ),
            (LogEscape::Default, "", "-"),
            (LogEscape::Json, "a\"b\\c\n\u{1}é", "a\\\"b\\\\c\\n\\u0001é"),
            (LogEscape::Json, "", ""),
            (LogEscape::None, "a\"\n", "a\"\n"),
        ];
        for (esc, v, want) in cases {
            let mut out = String::new();
            escape_into(esc, v, &mut out);
            assert_eq!(out, want, "{esc:?} {v:?}");
        }
        assert_eq!(
            LogFormat::combined().headers,
            ["referer".to_string(), "user-agent".to_string()]
        );
    }
}
