//! The kernel suite's bookkeeping, free of I/O: which boots to run for a test list and
//! a filter, and how each boot's result lines and exit verdict become test results.

use crate::protocol::{ListedTest, TestOutcome};
use crate::verdict::BootVerdict;

/// One `mode=test` boot of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBoot {
    /// The `test=` word: `None` runs every (non-should_panic) test.
    pub test_arg: Option<String>,
    /// The tests this boot must report on.
    pub expected: Vec<ExpectedTest>,
}

impl PlannedBoot {
    /// Names the boot in messages and log file names: `suite`, or the test argument.
    pub fn label(&self) -> String {
        match &self.test_arg {
            None => "suite".to_string(),
            Some(test) => test.clone(),
        }
    }
}

/// A test a boot is expected to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTest {
    /// The test's name.
    pub name: String,
    /// Whether it is a `should_panic` test (it must report "panicked as expected").
    pub expects_panic: bool,
}

impl From<&ListedTest> for ExpectedTest {
    fn from(test: &ListedTest) -> ExpectedTest {
        ExpectedTest {
            name: test.name.clone(),
            expects_panic: test.should_panic.is_some(),
        }
    }
}

/// Plans the boots for `listed` (from `mode=list`) and an optional filter, following
/// the kernel's rules (`docs/kernel-protocol.md`):
/// - a filter equal to a test's name selects that test alone: one boot;
/// - otherwise the ordinary tests that match (all, without a filter) share one boot,
///   with the filter passed on, because the kernel skips `should_panic` tests in such a
///   run;
/// - each matching `should_panic` test gets a boot of its own, since its panic ends
///   the boot.
pub fn plan_boots(listed: &[ListedTest], filter: Option<&str>) -> Result<Vec<PlannedBoot>, String> {
    if let Some(exact) = filter.and_then(|f| listed.iter().find(|t| t.name == f)) {
        return Ok(vec![PlannedBoot {
            test_arg: Some(exact.name.clone()),
            expected: vec![exact.into()],
        }]);
    }
    let matching: Vec<&ListedTest> = listed
        .iter()
        .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
        .collect();
    if matching.is_empty() {
        return Err(match filter {
            Some(f) => format!("no kernel test matches '{f}'"),
            None => "the kernel listed no tests".to_string(),
        });
    }
    let (panicking, ordinary): (Vec<&ListedTest>, Vec<&ListedTest>) =
        matching.into_iter().partition(|t| t.should_panic.is_some());
    let mut boots = Vec::new();
    if !ordinary.is_empty() {
        boots.push(PlannedBoot {
            test_arg: filter.map(str::to_string),
            expected: ordinary.into_iter().map(ExpectedTest::from).collect(),
        });
    }
    boots.extend(panicking.into_iter().map(|t| PlannedBoot {
        test_arg: Some(t.name.clone()),
        expected: vec![t.into()],
    }));
    Ok(boots)
}

/// The final word on one test (or on a boot that failed outside any test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// Test name, or `<boot LABEL>` for a failure no test accounts for.
    pub name: String,
    /// `None` if it passed, else why it failed.
    pub failure: Option<String>,
    /// Whether the kernel's own result line already said all there is to say (it was
    /// printed live); otherwise the record is printed after the boot.
    pub shown_live: bool,
}

impl TestRecord {
    /// Whether the test passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Combines what a boot reported with how it ended:
/// - every reported result counts (first report of a name wins); a `should_panic` test
///   that returned normally fails;
/// - an expected test with no result line fails with the boot's verdict as reason;
/// - a failed boot that no failed test explains (e.g. a crash after the last result)
///   adds a `<boot LABEL>` failure, so the failure is counted and never silent.
///
/// `kernel_report` is the kernel's last `PANIC`/`EXCEPTION`/`error` line, if any: it
/// is the best explanation of a crash, so it goes into the reasons above.
pub fn judge_boot(
    plan: &PlannedBoot,
    reported: &[(String, TestOutcome)],
    verdict: BootVerdict,
    kernel_report: Option<&str>,
) -> Vec<TestRecord> {
    let crash = match kernel_report {
        Some(report) => format!("{verdict}; the kernel said: {report}"),
        None => verdict.to_string(),
    };
    let mut records: Vec<TestRecord> = Vec::new();
    for (name, outcome) in reported {
        if records.iter().any(|r| &r.name == name) {
            continue;
        }
        let expects_panic = plan
            .expected
            .iter()
            .any(|t| &t.name == name && t.expects_panic);
        let record = match outcome {
            TestOutcome::Failed => TestRecord {
                name: name.clone(),
                failure: Some("the kernel reported FAILED".into()),
                shown_live: true,
            },
            TestOutcome::Passed if expects_panic => TestRecord {
                name: name.clone(),
                failure: Some("should_panic test returned without panicking".into()),
                shown_live: false,
            },
            TestOutcome::Passed | TestOutcome::PanickedAsExpected(_) | TestOutcome::Skipped(_) => {
                TestRecord {
                    name: name.clone(),
                    failure: None,
                    shown_live: true,
                }
            }
        };
        records.push(record);
    }
    for expected in &plan.expected {
        if !records.iter().any(|r| r.name == expected.name) {
            let reason = if verdict.is_success() {
                "no result line, although the boot succeeded".to_string()
            } else {
                format!("no result: the boot ended first ({crash})")
            };
            records.push(TestRecord {
                name: expected.name.clone(),
                failure: Some(reason),
                shown_live: false,
            });
        }
    }
    if !verdict.is_success() && records.iter().all(TestRecord::passed) {
        records.push(TestRecord {
            name: format!("<boot {}>", plan.label()),
            failure: Some(crash),
            shown_live: false,
        });
    }
    records
}

/// Passed and failed counts of `records`.
pub fn tally<'a>(records: impl IntoIterator<Item = &'a TestRecord>) -> (usize, usize) {
    records.into_iter().fold((0, 0), |(passed, failed), r| {
        if r.passed() {
            (passed + 1, failed)
        } else {
            (passed, failed + 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn listed(name: &str, should_panic: bool) -> ListedTest {
        ListedTest {
            name: name.into(),
            should_panic: should_panic.then(|| "msg".to_string()),
        }
    }

    fn expected(name: &str, expects_panic: bool) -> ExpectedTest {
        ExpectedTest {
            name: name.into(),
            expects_panic,
        }
    }

    fn sample() -> Vec<ListedTest> {
        vec![
            listed("window::enter", false),
            listed("window::remove", false),
            listed("window::double_remove", true),
            listed("sched::migrate", false),
            listed("sched::sleep_while_mapped", true),
        ]
    }

    #[test]
    fn whole_suite_plan() {
        let boots = plan_boots(&sample(), None).unwrap();
        assert_eq!(boots.len(), 3);
        assert_eq!(boots[0].test_arg, None);
        assert_eq!(
            boots[0].expected,
            [
                expected("window::enter", false),
                expected("window::remove", false),
                expected("sched::migrate", false)
            ]
        );
        assert_eq!(boots[1].test_arg.as_deref(), Some("window::double_remove"));
        assert_eq!(boots[1].expected, [expected("window::double_remove", true)]);
        assert_eq!(
            boots[2].test_arg.as_deref(),
            Some("sched::sleep_while_mapped")
        );
        assert_eq!(boots[0].label(), "suite");
        assert_eq!(boots[2].label(), "sched::sleep_while_mapped");
    }

    #[test]
    fn substring_filter_plan() {
        let boots = plan_boots(&sample(), Some("window")).unwrap();
        assert_eq!(boots.len(), 2);
        assert_eq!(boots[0].test_arg.as_deref(), Some("window"));
        assert_eq!(boots[0].expected.len(), 2);
        assert_eq!(boots[1].test_arg.as_deref(), Some("window::double_remove"));
        let only_panicking = plan_boots(&sample(), Some("sleep")).unwrap();
        assert_eq!(only_panicking.len(), 1);
        assert!(only_panicking[0].expected[0].expects_panic);
    }

    #[test]
    fn exact_name_wins() {
        let tests = vec![listed("map", false), listed("map_twice", true)];
        let boots = plan_boots(&tests, Some("map")).unwrap();
        assert_eq!(
            boots,
            [PlannedBoot {
                test_arg: Some("map".into()),
                expected: vec![expected("map", false)]
            }]
        );
    }

    #[test]
    fn empty_selection_is_an_error() {
        assert_eq!(
            plan_boots(&sample(), Some("nope")),
            Err("no kernel test matches 'nope'".to_string())
        );
        assert_eq!(
            plan_boots(&[], None),
            Err("the kernel listed no tests".to_string())
        );
    }

    fn suite_boot() -> PlannedBoot {
        PlannedBoot {
            test_arg: None,
            expected: vec![expected("a", false), expected("b", false)],
        }
    }

    #[test]
    fn clean_boot() {
        let records = judge_boot(
            &suite_boot(),
            &[
                ("a".into(), TestOutcome::Passed),
                ("b".into(), TestOutcome::Passed),
            ],
            BootVerdict::Success,
            None,
        );
        assert_eq!(tally(&records), (2, 0));
        assert!(records.iter().all(|r| r.shown_live));
    }

    #[test]
    fn reported_failure_explains_the_failed_boot() {
        let records = judge_boot(
            &suite_boot(),
            &[
                ("a".into(), TestOutcome::Failed),
                ("b".into(), TestOutcome::Passed),
            ],
            BootVerdict::KernelFailure,
            None,
        );
        assert_eq!(tally(&records), (1, 1));
        assert_eq!(records.len(), 2, "no extra <boot> record");
    }

    #[test]
    fn crash_mid_suite_fails_the_missing_tests() {
        let records = judge_boot(
            &suite_boot(),
            &[("a".into(), TestOutcome::Passed)],
            BootVerdict::Reset,
            None,
        );
        assert_eq!(tally(&records), (1, 1));
        let missing = &records[1];
        assert_eq!(missing.name, "b");
        assert!(!missing.shown_live);
        assert!(missing.failure.as_ref().unwrap().contains("triple fault"));
    }

    #[test]
    fn failed_boot_with_all_results_in_counts_once() {
        let records = judge_boot(
            &suite_boot(),
            &[
                ("a".into(), TestOutcome::Passed),
                ("b".into(), TestOutcome::Passed),
            ],
            BootVerdict::TimedOut(Duration::from_secs(3)),
            None,
        );
        assert_eq!(tally(&records), (2, 1));
        assert_eq!(records[2].name, "<boot suite>");
    }

    #[test]
    fn crash_reports_explain_missing_results() {
        let records = judge_boot(
            &suite_boot(),
            &[],
            BootVerdict::KernelFailure,
            Some("PANIC: PTE busy at src/window.rs:7"),
        );
        assert_eq!(
            records[0].failure.as_deref(),
            Some(
                "no result: the boot ended first (the kernel reported failure (QEMU exit \
                 status 35); the kernel said: PANIC: PTE busy at src/window.rs:7)"
            )
        );
    }

    #[test]
    fn should_panic_rules() {
        let plan = PlannedBoot {
            test_arg: Some("p".into()),
            expected: vec![expected("p", true)],
        };
        let panicked = judge_boot(
            &plan,
            &[("p".into(), TestOutcome::PanickedAsExpected("x".into()))],
            BootVerdict::Success,
            None,
        );
        assert_eq!(tally(&panicked), (1, 0));
        let returned = judge_boot(
            &plan,
            &[("p".into(), TestOutcome::Passed)],
            BootVerdict::Success,
            None,
        );
        assert_eq!(tally(&returned), (0, 1));
        assert!(!returned[0].shown_live);
    }

    #[test]
    fn silent_success_and_duplicates() {
        let records = judge_boot(
            &suite_boot(),
            &[
                ("a".into(), TestOutcome::Passed),
                ("a".into(), TestOutcome::Failed),
            ],
            BootVerdict::Success,
            None,
        );
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[1].failure.as_deref(),
            Some("no result line, although the boot succeeded")
        );
    }

    #[test]
    fn unexpected_results_still_count() {
        let records = judge_boot(
            &suite_boot(),
            &[
                ("a".into(), TestOutcome::Passed),
                ("b".into(), TestOutcome::Passed),
                ("c".into(), TestOutcome::Failed),
            ],
            BootVerdict::KernelFailure,
            None,
        );
        assert_eq!(tally(&records), (2, 1));
    }
}
