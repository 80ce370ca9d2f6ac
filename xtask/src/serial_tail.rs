//! The last lines of a boot's output, kept to explain a failure.

use std::collections::VecDeque;

/// How many lines a failure report shows: enough for a panic message and the test
/// output before it, short enough to read.
pub const TAIL_LINES: usize = 40;

/// A ring buffer of the most recent lines.
#[derive(Debug)]
pub struct SerialTail {
    lines: VecDeque<String>,
    capacity: usize,
}

impl SerialTail {
    /// An empty buffer that keeps at most `capacity` lines.
    pub fn new(capacity: usize) -> SerialTail {
        SerialTail {
            lines: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends a line, dropping the oldest one when full.
    pub fn push(&mut self, line: &str) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }

    /// The kept lines, oldest first.
    pub fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines() {
        let mut tail = SerialTail::new(3);
        for line in ["a", "b", "c", "d", "e"] {
            tail.push(line);
        }
        assert_eq!(tail.into_lines(), ["c", "d", "e"]);
    }

    #[test]
    fn short_output_is_kept_whole() {
        let mut tail = SerialTail::new(TAIL_LINES);
        tail.push("only");
        assert_eq!(tail.into_lines(), ["only"]);
        let mut none = SerialTail::new(0);
        none.push("x");
        assert!(none.into_lines().is_empty());
    }
}
