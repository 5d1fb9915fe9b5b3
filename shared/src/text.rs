//! Text that came from elsewhere (a stored event, an imported file), shown on a terminal: the
//! characters a terminal would obey instead of showing — control characters (an escape sequence
//! clears the screen) and the invisible ones that reorder or hide text (bidirectional overrides,
//! zero-width marks) — are written escaped, as `\u{1b}`.

use std::borrow::Cow;

/// Whether a terminal would act on `c` rather than show it, or show nothing for it.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Whether `c` shows nothing of its own, or changes how the text around it shows (issue 18): the
/// format characters (Unicode category Cf: zero-width space, non-joiner and joiner, the word
/// joiner U+2060, U+FEFF, the soft hyphen, the bidirectional marks, embeddings, overrides and
/// isolates U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, ...), the line and paragraph
/// separators, and the letters and marks that are blank by design (Hangul fillers, the combining
/// grapheme joiner, variation selectors). Hand-listed (Unicode 15): the standard library has no
/// general category, and this is the only place that needs one.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        // Cf, format characters.
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
            // Zl and Zp, the line and paragraph separators.
            | '\u{2028}'..='\u{2029}'
            // Blank by design: the combining grapheme joiner, the Mongolian free variation
            // selectors, the Hangul fillers, the variation selectors.
            | '\u{34f}'
            | '\u{180b}'..='\u{180f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{3164}'
            | '\u{ffa0}'
            // The blank Braille pattern: a letter that shows as a space.
            | '\u{2800}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{e0100}'..='\u{e01ef}'
    )
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

    #[test]
    fn invisible_and_direction_characters_are_escaped_too() {
        for (text, shown) in [
            ("evil\u{202e}ecila", "evil\\u{202e}ecila"),
            ("a\u{61c}b", "a\\u{61c}b"),
            ("a\u{200b}b\u{200d}c", "a\\u{200b}b\\u{200d}c"),
            ("a\u{2060}b\u{feff}", "a\\u{2060}b\\u{feff}"),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            ("\u{2066}isolate\u{2069}", "\\u{2066}isolate\\u{2069}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("line\u{2028}break", "line\\u{2028}break"),
            ("\u{3164}", "\\u{3164}"),
        ] {
            assert_eq!(escaped(text, false), shown, "{text:?}");
        }
        for visible in ['a', 'é', 'Ω', '中', '😀', ' ', '\u{a0}', '-', '\u{300}'] {
            assert!(!is_invisible(visible), "{visible:?} shows");
        }
    }
}
