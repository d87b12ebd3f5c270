//! River's rules for queue, kind and tag names, checked before anything is stored.

use crate::error::{Error, Result};

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// River's queue rule: at most 64 chars, `^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$`: lowercase
/// letters and digits, single `_`, `|` or `-` between them.
pub(crate) fn validate_queue(queue: &str) -> Result<()> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut prev_sep = true;
    let mut ok = !queue.is_empty() && queue.len() <= 64;
    for c in queue.chars() {
        if alnum(c) {
            prev_sep = false;
        } else if matches!(c, '_' | '|' | '-') && !prev_sep {
            prev_sep = true;
        } else {
            ok = false;
        }
    }
    if ok && !prev_sep {
        Ok(())
    } else {
        Err(Error::InvalidInsert(format!(
            "queue name {queue:?} is invalid: use at most 64 lowercase letters and digits, \
             separated by single '_', '-' or '|'"
        )))
    }
}

/// River's kind rule: `\A[\w][\w\-\[\]<>\/.·:+]+\z`, under 128 chars.
pub(crate) fn validate_kind(kind: &str) -> Result<()> {
    let mut chars = kind.chars();
    let first_ok = chars.next().is_some_and(is_word);
    let rest: Vec<char> = chars.collect();
    let rest_ok = !rest.is_empty() && rest.iter().all(|&c| is_word(c) || "-[]<>/.·:+".contains(c));
    if first_ok && rest_ok && kind.len() < 128 {
        Ok(())
    } else {
        Err(Error::InvalidInsert(format!(
            "kind {kind:?} is invalid: use 2 to 127 bytes of letters, digits, '_' and \
             -[]<>/.·:+, starting with a letter, digit or '_'"
        )))
    }
}

/// River's tag rule: 3 to 255 chars matching `\A[\w][\w\-]+[\w]\z` (so no commas, and the
/// pattern's three parts need three characters).
pub(crate) fn validate_tag(tag: &str) -> Result<()> {
    let chars: Vec<char> = tag.chars().collect();
    let ok = chars.len() >= 3
        && tag.len() <= 255
        && is_word(chars[0])
        && is_word(chars[chars.len() - 1])
        && chars[1..chars.len() - 1]
            .iter()
            .all(|&c| is_word(c) || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInsert(format!(
            "tag {tag:?} is invalid: use 3 to 255 letters, digits, '_' and '-', starting and \
             ending with a letter, digit or '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_river() {
        for good in ["default", "a", "email_high", "a-b|c_d", "q1"] {
            assert!(validate_queue(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Default",
            "a__b",
            "_a",
            "a_",
            "a b",
            "ä",
            &"a".repeat(65),
        ] {
            assert!(validate_queue(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_follow_river() {
        for good in ["sort", "my_app.Email<T>", "a:b+c/[d]", "x·y"] {
            assert!(validate_kind(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-ab", "a b", "a,b", &"k".repeat(128)] {
            assert!(validate_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_river() {
        for good in ["abc", "a-b", "user_1"] {
            assert!(validate_tag(good).is_ok(), "{good}");
        }
        for bad in ["", "t", "ab", "-ab", "ab-", "a,b", "a b c"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        let message = validate_tag("t").unwrap_err().to_string();
        assert!(message.contains("3 to 255"), "{message}");
    }
}
