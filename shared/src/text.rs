//! Text that came from elsewhere (a stored event, an imported file), shown on a terminal: the
//! characters a terminal would obey instead of showing — control characters (an escape sequence
//! clears the screen) and the invisible ones that reorder or hide text (bidirectional overrides,
//! zero-width marks) — are written escaped, as `\u{1b}`.

use std::borrow::Cow;

/// Whether a terminal would act on `c` rather than show it.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` with every unsafe character escaped; line breaks kept when `keep_lines` (a message of
/// several lines).
pub fn escaped(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let unsafe_here = |c: char| is_unsafe(c) && !(keep_lines && c == '\n');
    if !text.chars().any(unsafe_here) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if unsafe_here(c) { c.escape_unicode().to_string() } else { c.to_string() })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_obey_is_escaped() {
        assert_eq!(escaped("plain ünïcode", false), "plain ünïcode");
        assert_eq!(escaped("\u{1b}[2Jgone", false), "\\u{1b}[2Jgone");
        assert_eq!(escaped("abc\u{202e}def", false), "abc\\u{202e}def");
        assert_eq!(escaped("two\nlines", true), "two\nlines");
        assert_eq!(escaped("two\nlines", false), "two\\u{a}lines");
    }
}
