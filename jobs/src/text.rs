//! Texts shortened for people: one rule for every message, reply and alert that quotes
//! something of unknown length.

/// `text` cut to at most `max` characters, ending with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` cut to at most `max` UTF-16 code units (how Telegram counts a message's length),
/// ending with `…` where it was cut.
pub fn clip_utf16(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_string();
    }
    let room = max.saturating_sub('…'.len_utf16());
    let mut units = 0;
    let mut cut: String = text
        .chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= room
        })
        .collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::{clip, clip_utf16};

    #[test]
    fn clips_by_utf16_units_and_marks_the_cut() {
        assert_eq!(clip_utf16("abcdef", 4), "abc…");
        assert_eq!(clip_utf16("abc", 4), "abc");
        // 😀 is two units: it does not fit in the last unit left.
        assert_eq!(clip_utf16("ab😀cd", 4), "ab…");
        let long = "x".repeat(5000);
        assert_eq!(clip_utf16(&long, 4096).encode_utf16().count(), 4096);
    }

    #[test]
    fn clips_by_characters_and_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(clip("яяяя", 3), "яя…");
        assert_eq!(clip("ok", 3), "ok");
    }
}
