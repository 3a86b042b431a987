//! Directive values that contain nginx variables (`$uri`, `${host}`), parsed once at load.
//!
//! A [`Template`] is the value split into literal text and variable references, so a request
//! only concatenates (see `crate::cgi::params`); nothing is looked up or parsed per request.
//!
//! The syntax is nginx's (`ngx_http_script_compile`): `$` starts a variable whose name is the
//! longest run of ASCII letters, digits and `_`; `${name}` delimits it when text follows
//! directly (`${uri}x`). As in nginx, a `$` that is not followed by a name (`a$`, `$-`, `${}`)
//! is an error ("invalid variable name") — nginx has no escape for a literal `$` — and so is an
//! unclosed `${name`. Names are matched case-insensitively (nginx compares them with
//! `ngx_strncasecmp`). `$0`…`$9` are the captures of the regex location that answers (one
//! digit: `$12` is capture 1 then "2"; `${12}` is an error); where there are none they expand to
//! `""`, as in nginx. Only the variables in [`VARIABLES`] exist; any other
//! name is nginx's `unknown "x" variable` error, at load.

use std::fmt;

/// A variable a [`Template`] may reference. The request-time meaning of each is documented on
/// `crate::cgi::params::Vars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    Uri,
    RequestUri,
    /// `$args` and its nginx synonym `$query_string`.
    Args,
    DocumentRoot,
    RequestFilename,
    Host,
    ServerName,
    ServerPort,
    RemoteAddr,
    RequestMethod,
    ContentType,
    ContentLength,
    /// `$scheme`: `https` on a TLS connection, else `http`.
    Scheme,
    // Only in `log_format` ([`LOG_VARIABLES`]): known once the response is sent.
    Request,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestTime,
    Msec,
    TimeLocal,
    Connection,
    ConnectionRequests,
    RemoteUser,
    RequestId,
}

/// Every variable name known here (lower case), with what it refers to.
pub const VARIABLES: &[(&str, Variable)] = &[
    ("uri", Variable::Uri),
    ("request_uri", Variable::RequestUri),
    ("args", Variable::Args),
    ("query_string", Variable::Args),
    ("document_root", Variable::DocumentRoot),
    ("request_filename", Variable::RequestFilename),
    ("host", Variable::Host),
    ("server_name", Variable::ServerName),
    ("server_port", Variable::ServerPort),
    ("remote_addr", Variable::RemoteAddr),
    ("request_method", Variable::RequestMethod),
    ("content_type", Variable::ContentType),
    ("content_length", Variable::ContentLength),
    ("scheme", Variable::Scheme),
];

/// Variables `log_format` may use besides [`VARIABLES`] (and `$http_NAME`, any request header).
pub const LOG_VARIABLES: &[(&str, Variable)] = &[
    ("request", Variable::Request),
    ("status", Variable::Status),
    ("body_bytes_sent", Variable::BodyBytesSent),
    ("bytes_sent", Variable::BytesSent),
    ("request_time", Variable::RequestTime),
    ("msec", Variable::Msec),
    ("time_local", Variable::TimeLocal),
    ("connection", Variable::Connection),
    ("connection_requests", Variable::ConnectionRequests),
    ("remote_user", Variable::RemoteUser),
    ("request_id", Variable::RequestId),
];

impl Variable {
    /// The canonical (lower-case) name, without `$`.
    pub fn name(self) -> &'static str {
        VARIABLES
            .iter()
            .chain(LOG_VARIABLES)
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// INVARIANT: never empty, and never next to another `Literal`.
    Literal(String),
    Var(Variable),
    /// `$http_NAME` (log_format only): request header NAME, `_` read as `-`, stored in lower
    /// case with `-`.
    Http(String),
    /// `$0`…`$9`: a capture of the regex location that answers (`$0` the whole match); `""`
    /// where there is none, as in nginx.
    Capture(u8),
}

/// A value with its variables located. An empty template expands to `""`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a value is not a valid template: the character index (not byte) of the offending `$`
/// in the value, and nginx's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub at: usize,
    pub message: String,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Template {
    /// A template with no variables.
    pub fn literal(text: &str) -> Template {
        let pieces = if text.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Literal(text.to_string())]
        };
        Template { pieces }
    }

    /// Parses `text` per the module doc.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Template::parse_in(text, false)
    }

    /// Like [`Template::parse`], also accepting the `log_format` variables ([`LOG_VARIABLES`],
    /// `$http_NAME`).
    pub fn parse_log(text: &str) -> Result<Template, TemplateError> {
        Template::parse_in(text, true)
    }

    fn parse_in(text: &str, log: bool) -> Result<Template, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                lit.push(chars[i]);
                i += 1;
                continue;
            }
            let at = i;
            let err = |message: String| TemplateError { at, message };
            let braced = chars.get(i + 1) == Some(&'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < chars.len() && is_name_char(chars[end]) {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            if braced && chars.get(end) != Some(&'}') {
                return Err(err(format!(
                    "the closing bracket in \"{name}\" variable is missing"
                )));
            }
            if name.is_empty() {
                return Err(err("invalid variable name".to_string()));
            }
            if let Some(d) = name.chars().next().and_then(|c| c.to_digit(10)) {
                // nginx: one digit is the capture number; what follows is text (`$12` is
                // capture 1, then "2").
                if braced && name.len() > 1 {
                    return Err(err(format!("invalid capture \"${{{name}}}\"")));
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Capture(d as u8));
                i = if braced { end + 1 } else { start + 1 };
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let table = VARIABLES
                .iter()
                .chain(if log { LOG_VARIABLES } else { &[] });
            let piece = match table.clone().find(|(n, _)| *n == lower) {
                Some(&(_, var)) => Piece::Var(var),
                None => match lower.strip_prefix("http_") {
                    Some(h) if log && !h.is_empty() => Piece::Http(h.replace('_', "-")),
                    _ => return Err(err(format!("unknown \"{name}\" variable"))),
                },
            };
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(piece);
            i = if braced { end + 1 } else { end };
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Template { pieces })
    }

    /// Whether any piece is a variable or capture (else it is the same text for every request).
    pub fn has_vars(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Literal(_)))
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }
}

/// A template that is `text` as is (no variables looked for).
impl From<&str> for Template {
    fn from(text: &str) -> Template {
        Template::literal(text)
    }
}

impl fmt::Display for Template {
    /// The template with variables in the `${name}` form (for logs and tests; a literal `$`
    /// from [`Template::literal`] is shown as is).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => f.write_str(s)?,
                Piece::Var(v) => write!(f, "${{{}}}", v.name())?,
                Piece::Capture(n) => write!(f, "${{{n}}}")?,
                Piece::Http(h) => write!(f, "${{http_{}}}", h.replace('-', "_"))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Piece {
        Piece::Literal(s.to_string())
    }

    #[test]
    fn pieces() {
        use Variable::*;
        let cases: &[(&str, Vec<Piece>)] = &[
            ("", vec![]),
            ("plain", vec![lit("plain")]),
            ("$uri", vec![Piece::Var(Uri)]),
            ("${uri}", vec![Piece::Var(Uri)]),
            ("$URI", vec![Piece::Var(Uri)]),
            ("${Query_String}", vec![Piece::Var(Args)]),
            ("a$uri/b", vec![lit("a"), Piece::Var(Uri), lit("/b")]),
            (
                "${host}x$server_port",
                vec![Piece::Var(Host), lit("x"), Piece::Var(ServerPort)],
            ),
            (
                "$host$request_uri",
                vec![Piece::Var(Host), Piece::Var(RequestUri)],
            ),
            ("é$args-", vec![lit("é"), Piece::Var(Args), lit("-")]),
            ("/d/$1", vec![lit("/d/"), Piece::Capture(1)]),
            (
                "$12${3}x",
                vec![Piece::Capture(1), lit("2"), Piece::Capture(3), lit("x")],
            ),
            ("$0", vec![Piece::Capture(0)]),
        ];
        for (text, want) in cases {
            let t = Template::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert_eq!(t.pieces(), want.as_slice(), "{text:?}");
        }
    }

    #[test]
    fn every_variable_parses_both_ways() {
        for (name, var) in VARIABLES {
            for text in [format!("${name}"), format!("${{{name}}}")] {
                let t = Template::parse(&text).unwrap();
                assert_eq!(t.pieces(), [Piece::Var(*var)], "{text}");
            }
        }
    }

    #[test]
    fn errors() {
        let cases = [
            ("$", 0, "invalid variable name"),
            ("a$", 1, "invalid variable name"),
            ("$ x", 0, "invalid variable name"),
            ("x$-y", 1, "invalid variable name"),
            ("é$/", 1, "invalid variable name"),
            ("${}", 0, "invalid variable name"),
            (
                "${uri",
                0,
                "the closing bracket in \"uri\" variable is missing",
            ),
            (
                "${uri-x}",
                0,
                "the closing bracket in \"uri\" variable is missing",
            ),
            (
                "$uri${",
                4,
                "the closing bracket in \"\" variable is missing",
            ),
            ("${12}", 0, "invalid capture \"${12}\""),
            ("$urix", 0, "unknown \"urix\" variable"),
            ("ok $uri $nope", 8, "unknown \"nope\" variable"),
            ("${Bad}", 0, "unknown \"Bad\" variable"),
        ];
        for (text, at, message) in cases {
            let e = Template::parse(text).unwrap_err();
            assert_eq!((e.at, e.message.as_str()), (at, message), "{text:?}");
        }
    }

    /// Any text either parses or is an error inside it, never a panic; what parses prints back
    /// to an equal template. Deterministic pseudo-random strings over the tricky characters.
    #[test]
    fn random_text_never_panics() {
        let alphabet = ['$', '{', '}', 'u', 'r', 'i', '_', '1', 'é', ' ', 'x'];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize;
            for k in 0..len {
                let r = seed.rotate_left(5 * k as u32 + 7);
                text.push(alphabet[(r % alphabet.len() as u64) as usize]);
            }
            match Template::parse(&text) {
                Ok(t) => assert_eq!(Template::parse(&t.to_string()).as_ref(), Ok(&t), "{text:?}"),
                Err(e) => assert!(e.at < text.chars().count(), "{text:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["", "x", "a${uri}b", "$host$request_uri?x=1"] {
            let t = Template::parse(text).unwrap();
            assert_eq!(Template::parse(&t.to_string()).unwrap(), t, "{text:?}");
        }
        assert_eq!(
            Template::parse("a$query_string").unwrap().to_string(),
            "a${args}"
        );
        assert_eq!(Template::literal("").pieces(), []);
        assert_eq!(Template::literal("$x").pieces(), [lit("$x")]);
    }
}
