//! What clap itself prints — help, the version, usage errors — under the same colour rule as the
//! rest of the output (issue 18), and with the user's own bad arguments shown, never obeyed.
//!
//! clap decides colour on its own (it ignored `--color never`, and `CLICOLOR_FORCE` overrode
//! `NO_COLOR`), and an error quotes the value it refused as it was typed: `--user
//! $'evil\u202eecila'` reached the terminal with its right-to-left override. So clap renders into
//! a string and this module prints it: coloured only when `--color` (auto: a terminal, no
//! `NO_COLOR`, no `TERM=dumb`) says so, and plain and escaped when it quotes anything a terminal
//! would act on.

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::ColorChoice;

/// Parses the command line of `P`; on help, the version or a usage error, what clap had to say
/// has been printed and the exit code is returned.
pub fn parse<P: CommandFactory + FromArgMatches>() -> Result<P, ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let choice = color_choice(&args);
    let colours = |to_stderr: bool| {
        if to_stderr {
            choice.colours(std::io::stderr().is_terminal())
        } else {
            choice.colours(std::io::stdout().is_terminal())
        }
    };
    try_parse::<P>(&args, true).map_err(|error| report(&error, shown::<P>(&args, &error, colours)))
}

fn try_parse<P: CommandFactory + FromArgMatches>(args: &[OsString], styled: bool) -> Result<P, clap::Error> {
    let command = P::command();
    let command = if styled { command } else { command.styles(clap::builder::Styles::plain()) };
    command.try_get_matches_from(args).and_then(|matches| P::from_arg_matches(&matches))
}

/// Prints what clap had to say (help and the version on stdout, errors on stderr) and returns its
/// exit code.
fn report(error: &clap::Error, text: String) -> ExitCode {
    let code = ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    // Nobody is left to tell if the stream is gone (`orders --help | head -1`).
    let _ = if error.use_stderr() {
        std::io::stderr().write_all(text.as_bytes())
    } else {
        std::io::stdout().write_all(text.as_bytes())
    };
    code
}

/// The text of clap's message as it goes out: styled when `colours` says so for its stream, and
/// plain otherwise, or when it quotes a character a terminal would act on (the user's own
/// argument), which is then shown escaped. (clap's own plain rendering strips escape sequences,
/// the user's included: `a\e[2Jb` would be shown as `ab`. So the plain text is clap's message
/// rendered with no styles, the user's characters as they were, escaped here.)
fn shown<P: CommandFactory + FromArgMatches>(
    args: &[OsString],
    error: &clap::Error,
    colours: impl FnOnce(bool) -> bool,
) -> String {
    let quotes_unsafe =
        args.iter().any(|arg| arg.to_string_lossy().chars().any(orders_shared::text::is_unsafe));
    if !quotes_unsafe && colours(error.use_stderr()) {
        return error.render().ansi().to_string();
    }
    let plain = match try_parse::<P>(args, false) {
        Err(plain) => plain.render().ansi().to_string(),
        // Not the same outcome twice: nothing quoted is trusted, styles stripped.
        Ok(_) => error.render().to_string(),
    };
    // A line break of the user's own argument is theirs to see escaped, not a line of the
    // message: `show $'x\nerror: fake'` must not print a forged `error:` line.
    let mut plain = plain;
    for arg in args.iter().map(|arg| arg.to_string_lossy()).filter(|arg| arg.contains('\n')) {
        plain = plain.replace(arg.as_ref(), &orders_shared::text::escaped(&arg, false));
    }
    orders_shared::text::escaped(&plain, true).into_owned()
}

/// The `--color` given on the command line (the last one, as clap takes it), read before clap
/// parses: its own messages must obey it too, a usage error included. A value clap refuses
/// counts as `auto`.
fn color_choice(args: &[OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut args = args.iter().skip(1).map(OsString::as_os_str);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let value = match arg.to_str().and_then(|arg| arg.strip_prefix("--color")) {
            Some("") => args.next(),
            Some(inline) => inline.strip_prefix('=').map(OsStr::new),
            None => None,
        };
        if let Some(value) = value {
            choice = match value.to_str() {
                Some("always") => ColorChoice::Always,
                Some("never") => ColorChoice::Never,
                _ => ColorChoice::Auto,
            };
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(args: &[&str]) -> ColorChoice {
        let args: Vec<OsString> =
            std::iter::once("orders").chain(args.iter().copied()).map(OsString::from).collect();
        color_choice(&args)
    }

    #[test]
    fn the_color_option_is_read_before_clap_parses() {
        assert_eq!(choice(&["list"]), ColorChoice::Auto);
        assert_eq!(choice(&["--color", "never", "list", "--bogus"]), ColorChoice::Never);
        assert_eq!(choice(&["list", "--color=always"]), ColorChoice::Always);
        assert_eq!(choice(&["--color=never", "list", "--color", "always"]), ColorChoice::Always);
        assert_eq!(choice(&["--color", "sometimes"]), ColorChoice::Auto);
        assert_eq!(choice(&["--colorful"]), ColorChoice::Auto);
        assert_eq!(choice(&["create", "--", "--color=never"]), ColorChoice::Auto);
    }

    fn refused(args: &[&str]) -> String {
        let args: Vec<OsString> =
            std::iter::once("orders").chain(args.iter().copied()).map(OsString::from).collect();
        let error = try_parse::<crate::args::Cli>(&args, true).expect_err("refused");
        shown::<crate::args::Cli>(&args, &error, |_| true)
    }

    #[test]
    fn a_refused_argument_is_shown_escaped_and_without_colour() {
        for (user, escaped) in [
            ("evil\u{202e}ecila", "evil\\u{202e}ecila"),
            ("a\u{1b}[2Jb", "a\\u{1b}[2Jb"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
        ] {
            let text = refused(&["create", "--user", user, "--total", "2"]);
            assert!(!text.chars().any(|c| c != '\n' && orders_shared::text::is_unsafe(c)), "{text:?}");
            assert!(text.contains(escaped), "{text}");
        }
        assert!(refused(&["show", "--bogus"]).contains('\u{1b}'), "coloured when asked");
        let args: Vec<OsString> = ["orders", "show", "--bogus"].map(OsString::from).into();
        let error = try_parse::<crate::args::Cli>(&args, true).expect_err("refused");
        let plain = shown::<crate::args::Cli>(&args, &error, |_| false);
        assert!(!plain.contains('\u{1b}'), "plain otherwise: {plain:?}");
        assert!(plain.contains("unexpected argument '--bogus'"), "{plain}");
    }
}
