//! `try_files FILE... URI | =CODE | @NAME`
//! (<https://nginx.org/en/docs/http/ngx_http_core_module.html#try_files>) and the check that
//! every `@name` it or an `error_page` names exists.
//!
//! Each FILE and a fallback URI are [`Template`]s (`$uri`, `$args`, …), parsed here so a typo
//! fails at load. nginx looks a missing named location up per request and answers 500; here it is
//! a load error, since the request could never succeed.

use super::error::ConfigError;
use super::model::{TryFallback, TryFiles};
use super::settings::bad_value;
use super::template::Template;
use super::tree::{Directive, Word};

/// A directive argument as a template, with nginx's message at the offending `$`.
pub(crate) fn template_arg(d: &Directive, i: usize) -> Result<Template, ConfigError> {
    let w = &d.args[i];
    Template::parse(&w.text).map_err(|e| {
        w.err_at_char(
            e.at,
            format!("{} in \"{}\" directive", e.message, d.name.text),
        )
    })
}

pub(crate) fn parse(d: &Directive) -> Result<TryFiles, ConfigError> {
    let n = d.args.len();
    let files = (0..n - 1)
        .map(|i| template_arg(d, i))
        .collect::<Result<Vec<_>, _>>()?;
    let last = &d.args[n - 1].text;
    let fallback = if let Some(code) = last.strip_prefix('=') {
        // nginx accepts any code 0..999 here; a response needs a real status.
        let code = super::values::status(code, 100..=599)
            .ok_or_else(|| bad_value(d, n - 1, ", it must be \"=CODE\" with CODE 100-599"))?;
        TryFallback::Code(code)
    } else if let Some(name) = last.strip_prefix('@') {
        if name.is_empty() {
            return Err(bad_value(d, n - 1, ""));
        }
        TryFallback::Named(name.to_string())
    } else {
        TryFallback::Uri(template_arg(d, n - 1)?)
    };
    Ok(TryFiles { files, fallback })
}

/// The `@name` references of a server (`try_files` fallbacks and `error_page` targets, with
/// the word to point at) must each name one of `named` (patterns with their `@`).
pub(crate) fn check_names(refs: &[(String, Word)], named: &[&str]) -> Result<(), ConfigError> {
    for (name, w) in refs {
        if !named
            .iter()
            .any(|n| n.strip_prefix('@') == Some(name.as_str()))
        {
            return Err(w.err(format!("named location \"@{name}\" is not defined")));
        }
    }
    Ok(())
}
