//! Redis's glob patterns (KEYS, SCAN MATCH), byte for byte as `stringmatchlen` reads them:
//! `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` (ends swapped if reversed,
//! compared as C's signed `char`), `\x` a literal `x`. An unclosed `[` takes the rest of the
//! pattern as its set. No crate matches these rules exactly (they are not path globs), hence
//! this file.
//!
//! Every token but `*` consumes exactly one byte, so one backtracking point (the last `*`)
//! suffices: the match takes time proportional to pattern × string, never exponential.

/// Whether `string` matches `pattern`.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let (mut at_pattern, mut at_string) = (0, 0);
    // After the last `*`: where the pattern resumes, and how much of the string it took so far.
    let mut last_star: Option<(usize, usize)> = None;
    // Backtracks only move forward in the string, and between two of them at most the whole
    // pattern is read once: the loop's bound.
    let steps_max = (pattern.len() + 2) * (string.len() + 2);
    for _ in 0..steps_max {
        if pattern.get(at_pattern) == Some(&b'*') {
            while pattern.get(at_pattern) == Some(&b'*') {
                at_pattern += 1;
            }
            if at_pattern == pattern.len() {
                return true;
            }
            last_star = Some((at_pattern, at_string));
            continue;
        }
        if at_string == string.len() {
            // Only stars may remain; a star taking more cannot help, the string is used up.
            return pattern[at_pattern..].iter().all(|byte| *byte == b'*');
        }
        let consumed = match pattern.get(at_pattern..) {
            Some(rest) if !rest.is_empty() => match_one(rest, string[at_string]),
            _ => None,
        };
        if let Some(consumed) = consumed {
            at_pattern += consumed;
            at_string += 1;
            continue;
        }
        // A mismatch: the last star takes one byte more, if there is one to take.
        let Some((resume, taken)) = last_star else { return false };
        if taken + 1 > string.len() {
            return false;
        }
        last_star = Some((resume, taken + 1));
        (at_pattern, at_string) = (resume, taken + 1);
    }
    unreachable!("a glob match ends within pattern × string steps")
}

/// Matches one byte against the token at the front of `pattern` (not `*`): the pattern bytes
/// the token took, or `None` if the byte does not match.
fn match_one(pattern: &[u8], byte: u8) -> Option<usize> {
    debug_assert!(!pattern.is_empty() && pattern[0] != b'*');
    match pattern[0] {
        b'?' => Some(1),
        b'[' => {
            let (matched, consumed) = match_set(&pattern[1..], byte);
            matched.then_some(consumed + 1)
        }
        b'\\' if pattern.len() >= 2 => (pattern[1] == byte).then_some(2),
        literal => (literal == byte).then_some(1),
    }
}

/// A `[...]` set, `pattern` starting after the `[`: whether `byte` is in it, and the pattern
/// bytes the set took (its closing `]` included; the rest of the pattern if it never closes).
fn match_set(pattern: &[u8], byte: u8) -> (bool, usize) {
    let negated = pattern.first() == Some(&b'^');
    let mut at = usize::from(negated);
    let mut matched = false;
    loop {
        let rest = &pattern[at..];
        match rest {
            [] => break,
            [b'\\', escaped, ..] => {
                matched |= *escaped == byte;
                at += 2;
            }
            [b']', ..] => {
                at += 1;
                break;
            }
            [start, b'-', end, ..] => {
                // C compares `char`s, signed here: bytes above 0x7f sort below the others.
                let (start, end, byte) = (*start as i8, *end as i8, byte as i8);
                let (low, high) = if start > end { (end, start) } else { (start, end) };
                matched |= (low..=high).contains(&byte);
                at += 3;
            }
            [literal, ..] => {
                matched |= *literal == byte;
                at += 1;
            }
        }
    }
    (matched != negated, at)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn matches(pattern: &str, string: &str) -> bool {
        glob_match(pattern.as_bytes(), string.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("h?llo", "hello"));
        assert!(!matches("h?llo", "hllo"));
        assert!(matches("h*llo", "hllo"));
        assert!(matches("h*llo", "heeeello"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-b-b-"));
        assert!(!matches("a*b", "a"));
        assert!(matches("a**", "a"));
        assert!(!matches("", "a"));
        assert!(matches("", ""));
    }

    #[test]
    fn sets_ranges_and_escapes() {
        assert!(matches("h[ae]llo", "hallo"));
        assert!(!matches("h[ae]llo", "hillo"));
        assert!(matches("h[^e]llo", "hallo"));
        assert!(!matches("h[^e]llo", "hello"));
        assert!(matches("h[a-b]llo", "hbllo"));
        assert!(matches("h[b-a]llo", "hallo"), "reversed ends are swapped");
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "a"));
        assert!(matches("[\\]]", "]"));
        assert!(matches("[abc", "c"), "an unclosed set takes the rest of the pattern");
        assert!(matches("[^", "x"), "an empty negated set matches any byte");
        assert!(matches("a\\", "a\\"), "a trailing backslash is literal");
        assert!(!glob_match(b"[a-z]", &[0xe9]), "bytes above 0x7f are negative chars");
        assert!(glob_match(b"[\x80-a]", b"\x01"), "so a range from 0x80 to 'a' holds 0x01");
    }

    /// Redis's recursive reading of `*`, without the backtracking shortcut.
    fn reference(pattern: &[u8], string: &[u8]) -> bool {
        match pattern.first() {
            None => string.is_empty(),
            Some(b'*') => (0..=string.len()).any(|taken| reference(&pattern[1..], &string[taken..])),
            Some(_) => match (string.first(), super::match_one(pattern, string.first().copied().unwrap_or(0))) {
                (Some(_), Some(consumed)) => reference(&pattern[consumed..], &string[1..]),
                _ => false,
            },
        }
    }

    proptest::proptest! {
        #[test]
        fn backtracking_agrees_with_the_recursive_reading(
            pattern in proptest::collection::vec(proptest::sample::select(b"ab*?[]^-\\".to_vec()), 0..8),
            string in proptest::collection::vec(proptest::sample::select(b"ab-]*".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &string), reference(&pattern, &string));
        }
    }

    #[test]
    fn many_stars_stay_linear() {
        let pattern = "*a".repeat(40) + "b";
        let string = "a".repeat(4000);
        assert!(!glob_match(pattern.as_bytes(), string.as_bytes()));
    }
}
