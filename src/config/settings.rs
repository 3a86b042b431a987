//! The inheritable settings shared by http, server and location levels, and how a level
//! inherits from its parent.
//!
//! nginx merges each directive separately after the whole file is read: a level's own value wins,
//! else the enclosing level's (so a `root` written *after* a nested `location` still applies to
//! it). Array directives (`index`, `error_page`, `cgi`, `cgi_param`) accumulate within one level,
//! and a level that sets any of them replaces the inherited list instead of extending it
//! (<https://nginx.org/en/docs/http/ngx_http_core_module.html#error_page>: "These directives are
//! inherited from the previous configuration level if and only if there are no error_page
//! directives defined on the current level").

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::model::{Cgi, CgiParam, DocRoot, ErrorPage, ErrorPageStatus, Symlinks};
use super::template::Template;
use super::tree::Directive;
use super::values;

/// nginx's default body limit.
pub const DEFAULT_CLIENT_MAX_BODY_SIZE: u64 = 1 << 20;
/// How long a CGI script may run before it is killed and answered with 504.
pub const DEFAULT_CGI_TIMEOUT: Duration = Duration::from_secs(60);

/// One level's own values: `None` / empty = not set here.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub docroot: Option<DocRoot>,
    pub index: Option<Vec<String>>,
    pub autoindex: Option<bool>,
    pub autoindex_max_entries: Option<u64>,
    pub disable_symlinks: Option<Symlinks>,
    pub error_pages: Option<Vec<ErrorPage>>,
    pub client_max_body_size: Option<u64>,
    pub cgi: Option<Vec<Cgi>>,
    pub cgi_timeout: Option<Duration>,
    pub cgi_params: Option<Vec<CgiParam>>,
    pub upload_store: Option<PathBuf>,
    /// Like `error_page`: a level with any `add_header` replaces the inherited list.
    pub add_headers: Option<Vec<super::headers::AddHeader>>,
    /// `Some(None)` is `expires off`.
    pub expires: Option<Option<super::headers::Expires>>,
    pub max_ranges: Option<u32>,
}

/// `path` against `prefix` unless already absolute.
pub fn resolve(prefix: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        prefix.join(p)
    }
}

fn duplicate(d: &Directive) -> ConfigError {
    d.name
        .err(format!("\"{}\" directive is duplicate", d.name.text))
}

/// Sets `slot` once; a second time at the same level is nginx's "is duplicate" error.
fn set_once<T>(slot: &mut Option<T>, value: T, d: &Directive) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(duplicate(d));
    }
    *slot = Some(value);
    Ok(())
}

pub fn bad_value(d: &Directive, arg: usize, hint: &str) -> ConfigError {
    let a = &d.args[arg];
    d.args[arg].err(format!(
        "invalid value \"{}\" in \"{}\" directive{hint}",
        a.text, d.name.text
    ))
}

impl Settings {
    /// Applies `d` if it is one of the inheritable directives; `Ok(false)` if it is not.
    /// `location` is the enclosing location's (modifier-is-regex, pattern), for `alias`.
    pub fn apply(
        &mut self,
        d: &Directive,
        prefix: &Path,
        location: Option<(bool, &str)>,
    ) -> Result<bool, ConfigError> {
        let arg = |i: usize| d.args[i].text.as_str();
        match d.name.text.as_str() {
            "root" | "alias" => {
                if let Some(prev) = &self.docroot {
                    let was = match prev {
                        DocRoot::Root(_) => "root",
                        DocRoot::Alias { .. } => "alias",
                    };
                    if was == d.name.text {
                        return Err(duplicate(d));
                    }
                    return Err(d.name.err(format!(
                        "\"{}\" directive is duplicate, \"{was}\" directive was specified earlier",
                        d.name.text
                    )));
                }
                if d.name.text == "alias" && location.is_some_and(|l| l.0) && arg(0).contains('$') {
                    // A regex location's alias may use its captures (and variables).
                    Template::parse(arg(0)).map_err(|e| {
                        d.args[0].err_at_char(e.at, format!("{} in \"alias\" directive", e.message))
                    })?;
                }
                let dir = resolve(prefix, arg(0));
                self.docroot = Some(if d.name.text == "root" {
                    DocRoot::Root(dir)
                } else {
                    let (is_regex, pattern) = location.unwrap_or((false, ""));
                    let strip = if is_regex {
                        String::new()
                    } else {
                        pattern.to_string()
                    };
                    DocRoot::Alias { dir, strip }
                });
            }
            "index" => self
                .index
                .get_or_insert_with(Vec::new)
                .extend(d.args.iter().map(|a| a.text.clone())),
            "autoindex" => {
                let v = values::flag(arg(0))
                    .ok_or_else(|| bad_value(d, 0, ", it must be \"on\" or \"off\""))?;
                set_once(&mut self.autoindex, v, d)?;
            }
            "autoindex_max_entries" => {
                let v = arg(0)
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad_value(d, 0, ", it must be a positive number"))?;
                set_once(&mut self.autoindex_max_entries, v, d)?;
            }
            "disable_symlinks" => {
                let v = match arg(0) {
                    "off" => Symlinks::Follow,
                    "on" => Symlinks::Refuse,
                    "if_not_owner" => Symlinks::IfSameOwner,
                    _ => {
                        return Err(bad_value(
                            d,
                            0,
                            ", it must be \"off\", \"on\" or \"if_not_owner\"",
                        ))
                    }
                };
                set_once(&mut self.disable_symlinks, v, d)?;
            }
            "client_max_body_size" => {
                let v = values::size_or(arg(0)).map_err(|b| bad_value(d, 0, &b.hint("size")))?;
                set_once(&mut self.client_max_body_size, v, d)?;
            }
            "max_ranges" => {
                let v = values::number(arg(0))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad_value(d, 0, ""))?;
                set_once(&mut self.max_ranges, v, d)?;
            }
            "cgi_timeout" => {
                let v = values::time_or(arg(0)).map_err(|b| bad_value(d, 0, &b.hint("time")))?;
                set_once(&mut self.cgi_timeout, v, d)?;
            }
            "upload_store" => set_once(&mut self.upload_store, resolve(prefix, arg(0)), d)?,
            "cgi" => {
                let ext = arg(0);
                if !ext.starts_with('.') || ext.len() < 2 || ext[1..].contains(['/', '.']) {
                    return Err(bad_value(d, 0, ", it must look like \".py\""));
                }
                // A bare interpreter name is looked up in PATH at exec time, as a shell would.
                let interpreter = d.args.get(1).map(|a| {
                    if a.text.contains('/') {
                        resolve(prefix, &a.text)
                    } else {
                        PathBuf::from(&a.text)
                    }
                });
                let list = self.cgi.get_or_insert_with(Vec::new);
                if list.iter().any(|c| c.ext == ext) {
                    return Err(d.args[0].err(format!("duplicate cgi extension \"{ext}\"")));
                }
                list.push(Cgi {
                    ext: ext.to_string(),
                    interpreter,
                });
            }
            "cgi_param" => {
                let p = parse_cgi_param(d)?;
                self.cgi_params.get_or_insert_with(Vec::new).push(p);
            }
            "add_header" => {
                let h = super::headers::parse_add_header(d)?;
                self.add_headers.get_or_insert_with(Vec::new).push(h);
            }
            "expires" => set_once(&mut self.expires, super::headers::parse_expires(d)?, d)?,
            "error_page" => {
                let pages = parse_error_page(d)?;
                self.error_pages.get_or_insert_with(Vec::new).extend(pages);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Fills every unset value from `parent`.
    pub fn inherit(&mut self, parent: &Settings) {
        fn take<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        take(&mut self.docroot, &parent.docroot);
        take(&mut self.index, &parent.index);
        take(&mut self.autoindex, &parent.autoindex);
        take(
            &mut self.autoindex_max_entries,
            &parent.autoindex_max_entries,
        );
        take(&mut self.disable_symlinks, &parent.disable_symlinks);
        take(&mut self.error_pages, &parent.error_pages);
        take(&mut self.client_max_body_size, &parent.client_max_body_size);
        take(&mut self.cgi, &parent.cgi);
        take(&mut self.cgi_timeout, &parent.cgi_timeout);
        take(&mut self.cgi_params, &parent.cgi_params);
        take(&mut self.upload_store, &parent.upload_store);
        take(&mut self.add_headers, &parent.add_headers);
        take(&mut self.expires, &parent.expires);
        take(&mut self.max_ranges, &parent.max_ranges);
    }
}

/// `cgi_param NAME VALUE [if_not_empty]` (nginx's `fastcgi_param` shape). NAME must have the
/// portable shape of an environment variable name (POSIX.1-2017 XBD §8.1: letters, digits and
/// `_`, not starting with a digit; lower case allowed for applications); VALUE is a
/// [`Template`], checked here so a typo in a variable name fails at load, not per request.
fn parse_cgi_param(d: &Directive) -> Result<CgiParam, ConfigError> {
    let name = &d.args[0].text;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad_value(
            d,
            0,
            ", a name is letters, digits and \"_\", not starting with a digit",
        ));
    }
    let value = Template::parse(&d.args[1].text).map_err(|e| {
        d.args[1].err_at_char(e.at, format!("{} in \"cgi_param\" directive", e.message))
    })?;
    let if_not_empty = match d.args.get(2) {
        None => false,
        Some(a) if a.text == "if_not_empty" => true,
        Some(_) => return Err(bad_value(d, 2, ", it must be \"if_not_empty\"")),
    };
    Ok(CgiParam {
        name: name.clone(),
        value,
        if_not_empty,
    })
}

/// `error_page CODE... [=[RESPONSE]] URI`.
fn parse_error_page(d: &Directive) -> Result<Vec<ErrorPage>, ConfigError> {
    let n = d.args.len();
    let uri = d.args[n - 1].text.clone();
    let mut codes_end = n - 1;
    let mut status = ErrorPageStatus::Original;
    if let Some(resp) = d.args[n - 2].text.strip_prefix('=') {
        codes_end = n - 2;
        status = if resp.is_empty() {
            ErrorPageStatus::FromTarget
        } else {
            ErrorPageStatus::Fixed(
                values::status(resp, 100..=599).ok_or_else(|| bad_value(d, n - 2, ""))?,
            )
        };
    }
    if codes_end == 0 {
        return Err(d
            .name
            .err("invalid number of arguments in \"error_page\" directive"));
    }
    (0..codes_end)
        .map(|i| {
            // nginx: "value must be between 300 and 599".
            let code = values::status(&d.args[i].text, 300..=599)
                .ok_or_else(|| bad_value(d, i, ", it must be between 300 and 599"))?;
            Ok(ErrorPage {
                code,
                status,
                uri: uri.clone(),
            })
        })
        .collect()
}
