//! The `KEY=VALUE KEY=VALUE ...` words that the run and bench protocol lines carry
//! (`docs/kernel-protocol.md`), shared by their parsers.

/// The `KEY=VALUE` words of one line, in order. Words without `=` are kept with an
/// empty key so that a caller can insist on (or ignore) them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    words: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    /// Splits `text` on whitespace into `KEY=VALUE` words.
    pub fn parse(text: &'a str) -> Fields<'a> {
        let words = text
            .split_whitespace()
            .map(|word| word.split_once('=').unwrap_or(("", word)))
            .collect();
        Fields { words }
    }

    /// The value of the first `key=` word.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The value of `key=` as a whole number; `None` if absent or not a number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// Every `KEY=VALUE` word, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.words.iter().copied().filter(|(k, _)| !k.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_numbers() {
        let fields = Fields::parse("done=10 total=0  bytes=4096 stray cpu0=3");
        assert_eq!(fields.number("done"), Some(10));
        assert_eq!(fields.number("total"), Some(0));
        assert_eq!(fields.get("cpu0"), Some("3"));
        assert_eq!(fields.get("missing"), None);
        assert_eq!(
            fields.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["done", "total", "bytes", "cpu0"]
        );
        assert_eq!(Fields::parse("x=abc").number("x"), None);
    }
}
