//! Reads the kernel's serial lines as defined in `docs/kernel-protocol.md`.
//!
//! Parsing is deliberately forgiving: any line that is not a protocol line (kernel log
//! output, firmware noise, a half-written line from another CPU) is ignored rather than
//! treated as an error, because the verdict of a boot comes from its exit status and
//! from the result lines that *are* present.

/// The protocol lines all start with this; text before it on the same line (e.g. a
/// terminal escape sequence from firmware) is skipped.
const PREFIX: &str = "qmk: ";

/// One line of the protocol, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelLine {
    /// `qmk: test NAME [should_panic MESSAGE]` from `mode=list`.
    Listed(ListedTest),
    /// `qmk: listed N`: end of the list.
    ListEnd {
        /// How many tests the kernel says it listed.
        count: usize,
    },
    /// `qmk: test NAME ... ok|FAILED` from `mode=test`.
    Result {
        /// The test's name.
        name: String,
        /// What happened.
        outcome: TestOutcome,
    },
    /// `qmk: N passed, M failed`: the last line of a test boot.
    Summary {
        /// Tests that passed in this boot.
        passed: usize,
        /// Tests that failed in this boot.
        failed: usize,
    },
    /// `qmk: PANIC: MESSAGE`.
    Panic {
        /// Everything after `PANIC: `.
        message: String,
    },
    /// `qmk: EXCEPTION ...`.
    Exception {
        /// Everything after `EXCEPTION`.
        report: String,
    },
    /// `qmk: error: ...`, e.g. an unknown boot option.
    Error {
        /// Everything after `error: `.
        message: String,
    },
}

/// A test as announced by `mode=list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTest {
    /// The test's name (one word).
    pub name: String,
    /// For a `should_panic` test, the substring its panic message must contain.
    pub should_panic: Option<String>,
}

/// The result the kernel reported for one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// `ok`.
    Passed,
    /// `ok (panicked as expected: MESSAGE)`: a `should_panic` test that did.
    PanickedAsExpected(String),
    /// `ok (skipped: REASON)`: the test cannot run on this machine (e.g. it needs
    /// two CPUs); it checked nothing and counts as passed, `should_panic` or not.
    Skipped(String),
    /// `FAILED`.
    Failed,
}

impl TestOutcome {
    /// Whether the kernel counted the test as passing.
    pub fn passed(&self) -> bool {
        !matches!(self, TestOutcome::Failed)
    }
}

/// Parses one serial line (with or without its line ending); `None` for anything that
/// is not a protocol line.
pub fn parse_line(line: &str) -> Option<KernelLine> {
    let body = protocol_body(line)?;
    if let Some(test) = body.strip_prefix("test ") {
        return parse_test_line(test);
    }
    if let Some(count) = body.strip_prefix("listed ") {
        return Some(KernelLine::ListEnd {
            count: count.trim().parse().ok()?,
        });
    }
    if let Some(message) = body.strip_prefix("PANIC: ") {
        return Some(KernelLine::Panic {
            message: message.to_string(),
        });
    }
    if let Some(report) = body.strip_prefix("EXCEPTION") {
        return Some(KernelLine::Exception {
            report: report.trim_start().to_string(),
        });
    }
    if let Some(message) = body.strip_prefix("error: ") {
        return Some(KernelLine::Error {
            message: message.to_string(),
        });
    }
    parse_summary(body)
}

impl KernelLine {
    /// For a line that reports the kernel giving up (a panic, an exception or an
    /// error), the report as the kernel worded it, e.g. `PANIC: <message>`; shared by
    /// every command that explains why a boot failed.
    pub fn failure_report(&self) -> Option<String> {
        match self {
            KernelLine::Panic { message } => Some(format!("PANIC: {message}")),
            KernelLine::Exception { report } => Some(format!("EXCEPTION {report}")),
            KernelLine::Error { message } => Some(format!("error: {message}")),
            _ => None,
        }
    }
}

/// What follows `qmk: ` on a protocol line (line ending removed); `None` for a line
/// that is not part of the protocol. Shared by the parsers of every mode.
pub fn protocol_body(line: &str) -> Option<&str> {
    let line = line.trim_end_matches(['\r', '\n']);
    let start = line.find(PREFIX)?;
    Some(&line[start + PREFIX.len()..])
}

/// `NAME ... OUTCOME` (a result) or `NAME [should_panic MESSAGE]` (a listing).
fn parse_test_line(text: &str) -> Option<KernelLine> {
    if let Some((name, outcome)) = text.split_once(" ... ") {
        let name = valid_name(name)?;
        let outcome = parse_outcome(outcome.trim())?;
        return Some(KernelLine::Result { name, outcome });
    }
    let (name, rest) = match text.split_once(' ') {
        Some((name, rest)) => (name, rest.trim()),
        None => (text, ""),
    };
    let name = valid_name(name)?;
    let should_panic = if rest.is_empty() {
        None
    } else {
        // Only `should_panic` may follow the name; anything else is not a listing.
        let message = rest.strip_prefix("should_panic")?;
        if !message.is_empty() && !message.starts_with(' ') {
            return None;
        }
        Some(message.trim().to_string())
    };
    Some(KernelLine::Listed(ListedTest { name, should_panic }))
}

fn parse_outcome(text: &str) -> Option<TestOutcome> {
    if text == "ok" {
        return Some(TestOutcome::Passed);
    }
    if let Some(message) = text
        .strip_prefix("ok (panicked as expected: ")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Some(TestOutcome::PanickedAsExpected(message.to_string()));
    }
    if let Some(reason) = text
        .strip_prefix("ok (skipped: ")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Some(TestOutcome::Skipped(reason.to_string()));
    }
    // Tolerate a reason after FAILED (`FAILED: ...`), which the protocol may grow.
    if text.starts_with("FAILED") {
        return Some(TestOutcome::Failed);
    }
    None
}

/// `N passed, M failed`.
fn parse_summary(text: &str) -> Option<KernelLine> {
    let (passed, failed) = text.split_once(", ")?;
    let passed = passed.strip_suffix(" passed")?.parse().ok()?;
    let failed = failed.trim_end().strip_suffix(" failed")?.parse().ok()?;
    Some(KernelLine::Summary { passed, failed })
}

/// Test names are single words: they travel as one `test=NAME` command-line word.
fn valid_name(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, should_panic: Option<&str>) -> Option<KernelLine> {
        Some(KernelLine::Listed(ListedTest {
            name: name.into(),
            should_panic: should_panic.map(Into::into),
        }))
    }

    fn result(name: &str, outcome: TestOutcome) -> Option<KernelLine> {
        Some(KernelLine::Result {
            name: name.into(),
            outcome,
        })
    }

    #[test]
    fn list_mode_lines() {
        assert_eq!(
            parse_line("qmk: test window::enter_remove"),
            listed("window::enter_remove", None)
        );
        assert_eq!(
            parse_line("qmk: test nesting_overflow should_panic nesting beyond capacity\r\n"),
            listed("nesting_overflow", Some("nesting beyond capacity"))
        );
        assert_eq!(
            parse_line("qmk: test bare should_panic"),
            listed("bare", Some(""))
        );
        assert_eq!(
            parse_line("qmk: listed 12"),
            Some(KernelLine::ListEnd { count: 12 })
        );
    }

    #[test]
    fn test_mode_lines() {
        assert_eq!(
            parse_line("qmk: test a::b ... ok"),
            result("a::b", TestOutcome::Passed)
        );
        assert_eq!(
            parse_line("qmk: test a ... FAILED"),
            result("a", TestOutcome::Failed)
        );
        assert_eq!(
            parse_line("qmk: test a ... FAILED: assertion"),
            result("a", TestOutcome::Failed)
        );
        assert_eq!(
            parse_line("qmk: test p ... ok (panicked as expected: double remove (cpu 0))"),
            result(
                "p",
                TestOutcome::PanickedAsExpected("double remove (cpu 0)".into())
            )
        );
        assert_eq!(
            parse_line("qmk: test r ... ok (skipped: needs 2 CPUs)"),
            result("r", TestOutcome::Skipped("needs 2 CPUs".into()))
        );
        assert_eq!(
            parse_line("qmk: 7 passed, 1 failed"),
            Some(KernelLine::Summary {
                passed: 7,
                failed: 1
            })
        );
    }

    #[test]
    fn failure_reports() {
        assert_eq!(
            parse_line("qmk: PANIC: PTE busy at src/lib.rs:10"),
            Some(KernelLine::Panic {
                message: "PTE busy at src/lib.rs:10".into()
            })
        );
        assert_eq!(
            parse_line("qmk: EXCEPTION #PF at 0xdead"),
            Some(KernelLine::Exception {
                report: "#PF at 0xdead".into()
            })
        );
        assert_eq!(
            parse_line("qmk: error: unknown boot option 'foo'"),
            Some(KernelLine::Error {
                message: "unknown boot option 'foo'".into()
            })
        );
    }

    #[test]
    fn junk_before_the_prefix_is_skipped() {
        assert_eq!(
            parse_line("\x1b[2J\x1b[Hqmk: test a ... ok"),
            result("a", TestOutcome::Passed)
        );
        // Seen under QEMU: SeaBIOS ends without a newline before the kernel's first line.
        assert_eq!(
            parse_line("Booting from ROM..qmk: test a"),
            listed("a", None)
        );
    }

    #[test]
    fn unrelated_and_malformed_lines_are_ignored() {
        for line in [
            "",
            "booting...",
            "qmk: cpu 1 online",
            "qmk: test",
            "qmk: test ",
            "qmk: test a ... ",
            "qmk: test a ... maybe",
            "qmk: test a ...",
            "qmk: test a b",
            "qmk: test a should_panicky",
            "qmk: listed many",
            "qmk: 3 passed",
            "qmk: x passed, 0 failed",
            "qmk:test a ... ok",
            "QMK: test a ... ok",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn outcome_pass_fail() {
        assert!(TestOutcome::Passed.passed());
        assert!(TestOutcome::PanickedAsExpected(String::new()).passed());
        assert!(!TestOutcome::Failed.passed());
    }
}
