//! Values from the user as messages show them: control characters escaped, long values cut
//! with an ellipsis, so an error line stays one readable line whatever the input held.

/// The longest value a message repeats whole.
pub const MAX_SHOWN: usize = 120;

/// `value` with control characters escaped (`\n`, `\u{1b}`) and cut after [`MAX_SHOWN`]
/// characters with `…`.
pub fn cut(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A whole message made safe to print: control characters escaped, at most `max` characters.
pub fn message(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(cut("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        let long = "x".repeat(1000);
        assert_eq!(cut(&long).chars().count(), MAX_SHOWN + 1);
        assert!(cut(&long).ends_with('…'));
        assert_eq!(message("ok", 10), "ok");
    }
}
