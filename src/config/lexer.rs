//! Lexer: config text → tokens with 1-based line and column.
//!
//! The token rules follow nginx's reader (documented in "Beginner's Guide → Configuration File's
//! Structure" and observable with `nginx -t`):
//! - whitespace (space, tab, CR, LF) separates tokens;
//! - `#` at the start of a token starts a comment running to the end of the line
//!   (`a#b` is one word, as in nginx);
//! - `;`, `{` and `}` are tokens of their own and end a bare word — except in `${name}`, nginx's
//!   braced variable, which stays inside the word (nginx's reader keeps a `{` that follows `$`);
//!   an unclosed `${name` is left for the value's own check to report;
//! - a token that *starts* with `"` or `'` is quoted and runs to the matching quote; it may hold
//!   whitespace, `;`, braces and `#`; a quote inside a bare word is an ordinary character;
//! - a closing quote must be followed by whitespace, `;`, `{`, `}` or end of input (nginx rejects
//!   `"a"b` with "unexpected ..."), so two tokens never touch;
//! - a backslash escapes the next character in both kinds of word: `\"`, `\'` and `\\` drop the
//!   backslash, `\t` `\r` `\n` become the control character, and any other pair is kept as is so
//!   regexes like `\.php$` survive unquoted or quoted;
//! - a token is at most [`MAX_TOKEN`] bytes (nginx's 4 KiB parameter buffer: "too long
//!   parameter"), reported as an error at the token, and reading goes on;
//! - a NUL byte anywhere is an error at its position (a binary or corrupt file), and reading
//!   stops there.
//!
//! Each token is recognised with a small `nom` parser; the driving loop owns position tracking
//! (offset → line/column through a table of line starts) and turns a parser failure into a
//! `ConfigError` at the token where it happened.

use nom::branch::alt;
use nom::bytes::complete::{escaped, is_not, tag, take_till, take_while, take_while1};
use nom::character::complete::{anychar, char, none_of};
use nom::combinator::{opt, recognize, value};
use nom::multi::many1_count;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

use super::error::{ConfigError, Diagnostics, Pos};

/// Longest token, in bytes after unescaping (nginx's `NGX_CONF_BUFFER`).
pub const MAX_TOKEN: usize = 4096;

/// What a token is. Quoted words are `Word` with `quoted == true`: a quoted `"{"` is a word,
/// never a block opener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Semi,
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// The word after unescaping; for punctuation, the character itself.
    pub text: String,
    pub quoted: bool,
    pub pos: Pos,
}

/// Whitespace as nginx counts it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Skips whitespace and comments; succeeds consuming nothing when there is none.
fn skip(input: &str) -> IResult<&str, ()> {
    let space = value((), take_while1(is_space));
    let comment = value((), preceded(char('#'), take_till(|c| c == '\n')));
    let (rest, _) = nom::multi::many0_count(alt((space, comment))).parse(input)?;
    Ok((rest, ()))
}

/// `;`, `{` or `}`.
fn punct(input: &str) -> IResult<&str, TokenKind> {
    alt((
        value(TokenKind::Semi, char(';')),
        value(TokenKind::Open, char('{')),
        value(TokenKind::Close, char('}')),
    ))
    .parse(input)
}

/// A quoted word; returns the raw text between the quotes (escapes not yet applied).
fn quoted(input: &str) -> IResult<&str, &str> {
    // `escaped` alone fails on an empty body, hence the explicit `""` / `''` alternatives.
    alt((
        value("", tag("\"\"")),
        value("", tag("''")),
        delimited(char('"'), escaped(is_not("\"\\"), '\\', anychar), char('"')),
        delimited(
            char('\''),
            escaped(is_not("'\\"), '\\', anychar),
            char('\''),
        ),
    ))
    .parse(input)
}

/// A bare word: anything up to whitespace or punctuation; a backslash protects the next char,
/// and `${name}` is part of the word.
fn bare(input: &str) -> IResult<&str, &str> {
    let braced_var = (
        tag("${"),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
        opt(char('}')),
    );
    recognize(many1_count(alt((
        recognize(preceded(char('\\'), anychar)),
        recognize(braced_var),
        recognize(none_of(" \t\r\n;{}\\")),
    ))))
    .parse(input)
}

/// Applies the escape rules in the module doc.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('"' | '\'' | '\\')) => out.push(e),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Maps byte offsets to (line, column); columns count chars, not bytes.
///
/// Offsets are asked for in increasing order (token starts), so the cursor only moves forward
/// over each byte once: linear in the input however long a line is (issue 16: counting from the
/// line start for every token made a 1 MB one-line file quadratic). An offset behind the cursor
/// restarts the count from the beginning (never happens in `tokenize`).
struct Lines<'a> {
    text: &'a str,
    /// The cursor: a byte offset and its position.
    at: usize,
    line: u32,
    col: u32,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            at: 0,
            line: 1,
            col: 1,
        }
    }

    fn pos(&mut self, offset: usize) -> Pos {
        if offset < self.at {
            *self = Lines::new(self.text);
        }
        let span = &self.text[self.at..offset];
        match span.rfind('\n') {
            Some(nl) => {
                self.line += span.bytes().filter(|&b| b == b'\n').count() as u32;
                self.col = span[nl + 1..].chars().count() as u32 + 1;
            }
            None => self.col += span.chars().count() as u32,
        }
        self.at = offset;
        Pos {
            line: self.line,
            col: self.col,
        }
    }
}

/// Splits `text` into tokens. `file` only labels errors. Also returns the end-of-input position,
/// which "unexpected end of file" errors point at. Errors after which the token stream still
/// has a meaning (an overlong token) go to `diags`; the others are returned.
pub fn tokenize(
    text: &str,
    file: &str,
    diags: &mut Diagnostics,
) -> Result<(Vec<Token>, Pos), ConfigError> {
    let mut lines = Lines::new(text);
    if let Some(nul) = text.find('\0') {
        let at = lines.pos(nul);
        return Err(ConfigError::new(
            file,
            at,
            "NUL byte in the configuration (a binary or corrupt file?)",
        ));
    }
    let mut too_long = |t: &Token| {
        if t.text.len() > MAX_TOKEN {
            diags.push(ConfigError::new(
                file,
                t.pos,
                format!(
                    "too long token ({} bytes, at most {MAX_TOKEN})",
                    t.text.len()
                ),
            ));
        }
    };
    let offset = |rest: &str| text.len() - rest.len();
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        // `skip` cannot fail: many0 of parsers that always consume stops cleanly.
        if let Ok((r, ())) = skip(rest) {
            rest = r;
        }
        if rest.is_empty() {
            return Ok((tokens, lines.pos(text.len())));
        }
        let pos = lines.pos(offset(rest));
        if let Ok((r, kind)) = punct(rest) {
            tokens.push(Token {
                kind,
                text: rest[..1].to_string(),
                quoted: false,
                pos,
            });
            rest = r;
        } else if rest.starts_with(['"', '\'']) {
            let (r, raw) = quoted(rest).map_err(|_| {
                ConfigError::new(file, pos, "unexpected end of file, expecting closing quote")
            })?;
            if let Some(next) = r.chars().next() {
                if !is_space(next) && !matches!(next, ';' | '{' | '}') {
                    let at = lines.pos(offset(r));
                    return Err(ConfigError::new(
                        file,
                        at,
                        format!("unexpected \"{next}\" after closing quote"),
                    ));
                }
            }
            let t = Token {
                kind: TokenKind::Word,
                text: unescape(raw),
                quoted: true,
                pos,
            };
            too_long(&t);
            tokens.push(t);
            rest = r;
        } else {
            // Cannot fail: `rest` is non-empty and does not start with whitespace, `#`,
            // punctuation or a quote, so at least one char matches.
            let (r, raw) =
                bare(rest).map_err(|_| ConfigError::new(file, pos, "unexpected character"))?;
            let t = Token {
                kind: TokenKind::Word,
                text: unescape(raw),
                quoted: false,
                pos,
            };
            too_long(&t);
            tokens.push(t);
            rest = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, u32, u32)> {
        tokenize(text, "t", &mut Diagnostics::default())
            .unwrap()
            .0
            .into_iter()
            .map(|t| (t.text, t.pos.line, t.pos.col))
            .collect()
    }

    /// (word, line, column) triples expected from one input.
    type Expected = &'static [(&'static str, u32, u32)];

    #[test]
    fn tokens_and_positions() {
        let cases: &[(&str, Expected)] = &[
            ("root /x;", &[("root", 1, 1), ("/x", 1, 6), (";", 1, 8)]),
            (
                "a{b;}",
                &[
                    ("a", 1, 1),
                    ("{", 1, 2),
                    ("b", 1, 3),
                    (";", 1, 4),
                    ("}", 1, 5),
                ],
            ),
            ("# c\n  x;", &[("x", 2, 3), (";", 2, 4)]),
            ("x # c ; {\ny;", &[("x", 1, 1), ("y", 2, 1), (";", 2, 2)]),
            ("a#b;", &[("a#b", 1, 1), (";", 1, 4)]),
            ("\"a b;{}\";", &[("a b;{}", 1, 1), (";", 1, 9)]),
            ("\"\" '';", &[("", 1, 1), ("", 1, 4), (";", 1, 6)]),
            (
                r#""a\"b" 'c\'d';"#,
                &[("a\"b", 1, 1), ("c'd", 1, 8), (";", 1, 14)],
            ),
            (
                r#""\t\n\\" x;"#,
                &[("\t\n\\", 1, 1), ("x", 1, 10), (";", 1, 11)],
            ),
            (r"~ \.php$;", &[("~", 1, 1), (r"\.php$", 1, 3), (";", 1, 9)]),
            (r#""\.php$";"#, &[(r"\.php$", 1, 1), (";", 1, 9)]),
            (r"a\;b;", &[("a\\;b", 1, 1), (";", 1, 5)]),
            ("a\"b;", &[("a\"b", 1, 1), (";", 1, 4)]),
            ("\r\n\tx\r\n;", &[("x", 2, 2), (";", 3, 1)]),
            ("é é;", &[("é", 1, 1), ("é", 1, 3), (";", 1, 4)]),
            // nginx's braced variables stay in the word; other braces still split it.
            ("a${uri}b;", &[("a${uri}b", 1, 1), (";", 1, 9)]),
            ("${uri};", &[("${uri}", 1, 1), (";", 1, 7)]),
            (
                "${a${b}}c;",
                &[("${a${b}", 1, 1), ("}", 1, 8), ("c", 1, 9), (";", 1, 10)],
            ),
            ("${uri x;", &[("${uri", 1, 1), ("x", 1, 7), (";", 1, 8)]),
            ("${a-b};", &[("${a-b", 1, 1), ("}", 1, 6), (";", 1, 7)]),
            (
                "$ {x};",
                &[
                    ("$", 1, 1),
                    ("{", 1, 3),
                    ("x", 1, 4),
                    ("}", 1, 5),
                    (";", 1, 6),
                ],
            ),
            ("", &[]),
            ("# only a comment", &[]),
        ];
        for (text, want) in cases {
            let want: Vec<_> = want
                .iter()
                .map(|(s, l, c)| (s.to_string(), *l, *c))
                .collect();
            assert_eq!(words(text), want, "input {text:?}");
        }
    }

    #[test]
    fn quoted_flag_and_kinds() {
        let (toks, _) = tokenize("\"{\" { ; }", "t", &mut Diagnostics::default()).unwrap();
        let kinds: Vec<_> = toks.iter().map(|t| (t.kind, t.quoted)).collect();
        assert_eq!(
            kinds,
            [
                (TokenKind::Word, true),
                (TokenKind::Open, false),
                (TokenKind::Semi, false),
                (TokenKind::Close, false)
            ]
        );
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "x \"abc",
                "t:1:3: error: unexpected end of file, expecting closing quote",
            ),
            (
                "\n 'a\\'",
                "t:2:2: error: unexpected end of file, expecting closing quote",
            ),
            (
                "\"a\"b;",
                "t:1:4: error: unexpected \"b\" after closing quote",
            ),
            (
                "'it''s';",
                "t:1:5: error: unexpected \"'\" after closing quote",
            ),
        ];
        for (text, want) in cases {
            let err = tokenize(text, "t", &mut Diagnostics::default()).unwrap_err();
            assert_eq!(err.to_string(), want, "input {text:?}");
        }
    }

    #[test]
    fn end_position() {
        assert_eq!(
            tokenize("a;\nbc", "t", &mut Diagnostics::default())
                .unwrap()
                .1,
            Pos { line: 2, col: 3 }
        );
    }
}
