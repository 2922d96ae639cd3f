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

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_by_characters_and_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(clip("яяяя", 3), "яя…");
        assert_eq!(clip("ok", 3), "ok");
    }
}
