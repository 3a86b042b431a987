//! Tokens → a tree of directives, with `include` expanded in place.
//!
//! The grammar is nginx's: a directive is one or more words ended by `;`, or words followed by a
//! `{ ... }` block. Nothing here knows what a directive means; that is `build.rs`. `include` is
//! the exception because it changes *which text* is parsed: nginx expands it while reading, in
//! any context, so included directives land exactly where the `include` stood
//! (<https://nginx.org/en/docs/ngx_core_module.html#include>).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::{ConfigError, Diagnostics, Pos};
use super::include;
use super::lexer::{tokenize, Token, TokenKind};

/// A word with where it came from (file, line, column), so any later check can point at it.
#[derive(Debug, Clone)]
pub struct Word {
    pub text: String,
    pub file: Rc<str>,
    /// Where the word starts (its opening quote, when quoted).
    pub pos: Pos,
    pub quoted: bool,
}

impl Word {
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, self.pos, message)
    }

    /// An error at the `index`-th character of the word's text. The column is exact when the
    /// word's source spelling is its text (plus quotes): no escape, quote character or line
    /// break inside. Otherwise the source offset cannot be recovered from the text, and the
    /// error points at the word's start instead.
    pub fn err_at_char(&self, index: usize, message: impl Into<String>) -> ConfigError {
        let verbatim = !self.text.contains(['\\', '"', '\'', '\t', '\r', '\n']);
        let pos = match u32::try_from(index) {
            Ok(i) if verbatim => Pos {
                line: self.pos.line,
                col: self
                    .pos
                    .col
                    .saturating_add(u32::from(self.quoted))
                    .saturating_add(i),
            },
            _ => self.pos,
        };
        ConfigError::new(&self.file, pos, message)
    }
}

#[derive(Debug, Clone)]
pub struct Directive {
    /// The first word; errors about the directive as a whole point here.
    pub name: Word,
    pub args: Vec<Word>,
    /// `Some` for block directives (`server { }`), even when the block is empty.
    pub block: Option<Vec<Directive>>,
}

/// Nested includes deeper than this are taken as an include cycle.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Blocks nested deeper than this are an error (issue 16: a config nested thousands deep must
/// not exhaust the stack of `-t` or of a reload). nginx's own contexts need at most a handful
/// (`http { server { location { location { … } } } }`). Includes count: an included file's
/// blocks continue the depth of the block the `include` stands in.
pub const MAX_NESTING: usize = 16;

/// Parses `text` (the content of `file`) into directives, expanding includes relative to
/// `base_dir`. Errors after which the tree still has a meaning (a block nested too deep is
/// left out, an include that cannot be read adds nothing) go to `diags` and reading goes on;
/// an error that leaves the block structure unknown is returned.
pub fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    diags: &mut Diagnostics,
) -> Result<Vec<Directive>, ConfigError> {
    parse_at_depth(text, file, base_dir, 0, 0, diags)
}

fn parse_at_depth(
    text: &str,
    file: &str,
    base_dir: &Path,
    depth: usize,
    nesting: usize,
    diags: &mut Diagnostics,
) -> Result<Vec<Directive>, ConfigError> {
    let (tokens, eof) = tokenize(text, file, diags)?;
    let mut p = TreeParser {
        tokens: &tokens,
        at: 0,
        file: Rc::from(file),
        eof,
        base_dir,
        depth,
        nesting,
        diags,
    };
    p.block(false)
}

struct TreeParser<'a> {
    tokens: &'a [Token],
    at: usize,
    file: Rc<str>,
    eof: Pos,
    base_dir: &'a Path,
    depth: usize,
    /// Blocks open around the current position. INVARIANT: at most [`MAX_NESTING`], checked
    /// before `block` recurses, so recursion depth is bounded whatever the input.
    nesting: usize,
    diags: &'a mut Diagnostics,
}

impl TreeParser<'_> {
    fn word(&self, t: &Token) -> Word {
        Word {
            text: t.text.clone(),
            file: self.file.clone(),
            pos: t.pos,
            quoted: t.quoted,
        }
    }

    fn err_at(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, pos, message)
    }

    /// Reads directives until `}` (when `nested`) or end of input (at top level).
    fn block(&mut self, nested: bool) -> Result<Vec<Directive>, ConfigError> {
        let mut out = Vec::new();
        loop {
            let Some(tok) = self.tokens.get(self.at) else {
                return if nested {
                    Err(self.err_at(self.eof, "unexpected end of file, expecting \"}\""))
                } else {
                    Ok(out)
                };
            };
            match tok.kind {
                TokenKind::Close if nested => {
                    self.at += 1;
                    return Ok(out);
                }
                TokenKind::Close | TokenKind::Semi | TokenKind::Open => {
                    return Err(self.err_at(tok.pos, format!("unexpected \"{}\"", tok.text)));
                }
                TokenKind::Word => self.directive(&mut out)?,
            }
        }
    }

    /// Reads one directive starting at a word and appends it (or, for `include`, what the
    /// included files contain) to `out`.
    fn directive(&mut self, out: &mut Vec<Directive>) -> Result<(), ConfigError> {
        let name = self.word(&self.tokens[self.at]);
        self.at += 1;
        let mut args = Vec::new();
        loop {
            let Some(tok) = self.tokens.get(self.at) else {
                return Err(
                    self.err_at(self.eof, "unexpected end of file, expecting \";\" or \"}\"")
                );
            };
            self.at += 1;
            match tok.kind {
                TokenKind::Word => args.push(self.word(tok)),
                TokenKind::Semi => {
                    if name.text == "include" {
                        return self.include(&name, &args, out);
                    }
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                    });
                    return Ok(());
                }
                TokenKind::Open => {
                    if self.nesting >= MAX_NESTING {
                        let e = self.err_at(
                            tok.pos,
                            format!("blocks nested more than {MAX_NESTING} levels deep"),
                        );
                        self.diags.push(e);
                        // Leave the block out and go on after its `}`, without recursing.
                        return self.skip_block();
                    }
                    self.nesting += 1;
                    let block = self.block(true);
                    self.nesting -= 1;
                    let block = block?;
                    out.push(Directive {
                        name,
                        args,
                        block: Some(block),
                    });
                    return Ok(());
                }
                TokenKind::Close => {
                    return Err(self.err_at(tok.pos, "unexpected \"}\""));
                }
            }
        }
    }

    /// Skips tokens up to the `}` closing the block whose `{` was just read.
    fn skip_block(&mut self) -> Result<(), ConfigError> {
        let mut open = 1usize;
        while let Some(tok) = self.tokens.get(self.at) {
            self.at += 1;
            match tok.kind {
                TokenKind::Open => open += 1,
                TokenKind::Close => {
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.err_at(self.eof, "unexpected end of file, expecting \"}\""))
    }

    fn include(
        &mut self,
        name: &Word,
        args: &[Word],
        out: &mut Vec<Directive>,
    ) -> Result<(), ConfigError> {
        let [pattern] = args else {
            return Err(name.err("invalid number of arguments in \"include\" directive"));
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(pattern.err("too deeply nested includes (include cycle?)"));
        }
        let files = match include::expand(self.base_dir, &pattern.text) {
            Ok(f) => f,
            Err(m) => {
                self.diags.push(pattern.err(m));
                return Ok(());
            }
        };
        for path in files {
            let text = match super::read_text(&path, &pattern.file, pattern.pos) {
                Ok(t) => t,
                Err(e) => {
                    self.diags.push(e);
                    continue;
                }
            };
            let dir: PathBuf = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let label = path.to_string_lossy();
            // An included file's syntax error ends that file only.
            match parse_at_depth(
                &text,
                &label,
                &dir,
                self.depth + 1,
                self.nesting,
                self.diags,
            ) {
                Ok(ds) => out.extend(ds),
                Err(e) => self.diags.push(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a tree compactly: `name(arg,arg){...}` joined by spaces.
    fn show(ds: &[Directive]) -> String {
        ds.iter()
            .map(|d| {
                let args: Vec<&str> = d.args.iter().map(|a| a.text.as_str()).collect();
                let mut s = format!("{}({})", d.name.text, args.join(","));
                if let Some(b) = &d.block {
                    s.push_str(&format!("{{{}}}", show(b)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn shapes() {
        let cases = [
            ("a;", "a()"),
            ("a b c; d;", "a(b,c) d()"),
            ("s { l / { r x; } }", "s(){l(/){r(x)}}"),
            ("e {}", "e(){}"),
            ("", ""),
        ];
        for (text, want) in cases {
            let tree = parse(text, "t", Path::new("."), &mut Diagnostics::default()).unwrap();
            assert_eq!(show(&tree), want, "input {text:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "a {",
                "t:1:4: error: unexpected end of file, expecting \"}\"",
            ),
            (
                "a b",
                "t:1:4: error: unexpected end of file, expecting \";\" or \"}\"",
            ),
            ("}", "t:1:1: error: unexpected \"}\""),
            ("a {\n b c\n}", "t:3:1: error: unexpected \"}\""),
            ("  ;", "t:1:3: error: unexpected \";\""),
            ("{ }", "t:1:1: error: unexpected \"{\""),
            (
                "include;",
                "t:1:1: error: invalid number of arguments in \"include\" directive",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text, "t", Path::new("."), &mut Diagnostics::default()).unwrap_err();
            assert_eq!(err.to_string(), want, "input {text:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "a {".repeat(16), "}".repeat(16));
        assert!(parse(&ok, "t", Path::new("."), &mut Diagnostics::default()).is_ok());
        let deep = format!("{}{}", "a {".repeat(17), "}".repeat(17));
        let mut diags = Diagnostics::default();
        let tree = parse(&deep, "t", Path::new("."), &mut diags).unwrap();
        assert_eq!(
            diags.to_string(),
            "t:1:51: error: blocks nested more than 16 levels deep\n"
        );
        // The too-deep block is left out; what stands after it is still read.
        assert_eq!(show(&tree).matches('{').count(), 16);
        let after = format!("{}{}b;", "a {".repeat(17), "}".repeat(17));
        let tree = parse(&after, "t", Path::new("."), &mut Diagnostics::default()).unwrap();
        assert!(show(&tree).ends_with("b()"), "{}", show(&tree));
        // Far deeper than any stack would take recursively: still just an error.
        let huge = format!("{}{}", "a{".repeat(200_000), "}".repeat(200_000));
        let mut diags = Diagnostics::default();
        let _ = parse(&huge, "t", Path::new("."), &mut diags);
        assert!(diags.has_errors());
    }
}
