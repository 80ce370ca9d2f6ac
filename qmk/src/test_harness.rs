//! The in-kernel test harness.
//!
//! Tests are registered anywhere in the kernel with [`kernel_test!`]: each
//! registration is a [`KernelTest`] placed in the `.qmk_kernel_tests` linker
//! section, which the linker script gathers between two symbols. There is no
//! central list to keep in sync.
//!
//! A test fails by panicking (or by an exception). With `panic = "abort"`
//! nothing unwinds, so the first failure ends the boot: the harness prints
//! the test's `FAILED` line, the explanation, and the summary, and exits with
//! failure. A test that expects a panic runs alone in its own boot
//! (`mode=test test=NAME`); its expected panic ends that boot with success.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::qemu::{self, RunOutcome};

/// One registered test.
#[repr(C)]
pub struct KernelTest {
    /// `module_path!()` of the registration.
    pub module_path: &'static str,
    /// The test function's name.
    pub function_name: &'static str,
    /// The test body.
    pub run: fn(),
    /// `Some(substring)` for a test that passes only by panicking with a
    /// message containing `substring`.
    pub expected_panic: Option<&'static str>,
}

impl KernelTest {
    /// The test's name as the protocol shows it: the module path below
    /// `kernel_tests` (or below the crate), then the function.
    pub fn name(&'static self) -> TestName {
        TestName(self)
    }
}

/// Displays a test's name without allocating (usable in panic paths).
pub struct TestName(&'static KernelTest);

impl TestName {
    fn module(&self) -> &'static str {
        let path = self.0.module_path;
        path.strip_prefix("qmk::kernel_tests::")
            .or_else(|| path.strip_prefix("qmk::kernel_tests").map(|_| ""))
            .or_else(|| path.strip_prefix("qmk::"))
            .unwrap_or(path)
    }

    /// True when this name is exactly `text`.
    pub fn equals(&self, text: &str) -> bool {
        let module = self.module();
        let function = self.0.function_name;
        if module.is_empty() {
            return text == function;
        }
        text.len() == module.len() + 2 + function.len()
            && text.starts_with(module)
            && text[module.len()..].starts_with("::")
            && text.ends_with(function)
    }

    /// True when `text` occurs in this name.
    pub fn contains(&self, text: &str) -> bool {
        let mut buffer = [0u8; 256];
        let mut writer = crate::panic::TruncatingWriter::new(&mut buffer);
        let _ = core::fmt::write(&mut writer, format_args!("{self}"));
        writer.as_str().contains(text)
    }
}

impl core::fmt::Display for TestName {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.module() {
            "" => write!(formatter, "{}", self.0.function_name),
            module => write!(formatter, "{module}::{}", self.0.function_name),
        }
    }
}

/// Registers a kernel test.
///
/// ```ignore
/// kernel_test! {
///     /// What the test proves.
///     fn frames_are_distinct() { assert_ne!(a, b); }
/// }
/// kernel_test! {
///     #[should_panic(expected = "freed twice")]
///     fn double_free_is_caught() { ... }
/// }
/// ```
#[macro_export]
macro_rules! kernel_test {
    (
        $(#[doc = $doc:literal])*
        $(#[should_panic(expected = $expected:literal)])?
        fn $name:ident() $body:block
    ) => {
        $(#[doc = $doc])*
        fn $name() $body

        const _: () = {
            #[used]
            #[link_section = ".qmk_kernel_tests"]
            static REGISTRATION: $crate::test_harness::KernelTest =
                $crate::test_harness::KernelTest {
                    module_path: module_path!(),
                    function_name: stringify!($name),
                    run: $name,
                    expected_panic: {
                        #[allow(unused_variables)]
                        let expected: Option<&'static str> = None;
                        $(let expected = Some($expected);)?
                        expected
                    },
                };
        };
    };
}

extern "C" {
    // Declared as bytes: only their addresses matter.
    static __kernel_tests_start: u8;
    static __kernel_tests_end: u8;
}

/// Every registered test, in link order.
pub fn all_tests() -> &'static [KernelTest] {
    let start = (&raw const __kernel_tests_start).cast::<KernelTest>();
    let end = (&raw const __kernel_tests_end).cast::<KernelTest>();
    let count = (end as usize - start as usize) / core::mem::size_of::<KernelTest>();
    // SAFETY: the linker script places every `.qmk_kernel_tests` input
    // section (each one `KernelTest` static, 8-byte aligned with a size that
    // is a multiple of 8, so no padding between them) contiguously between
    // the two symbols, in read-only memory that lives for the whole run.
    unsafe { core::slice::from_raw_parts(start, count) }
}

/// Index into `all_tests()` of the running test, plus one (0: none).
static CURRENT_TEST: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
/// Set by [`skip`]: why the running test checked nothing in this boot.
static SKIPPED_BECAUSE: spin::Mutex<Option<&'static str>> = spin::Mutex::new(None);

/// Marks the running test as not applicable to this boot (e.g. it needs two
/// CPUs and the machine has one); the test must return right after. It is
/// reported as `ok (skipped: REASON)`, and a `should_panic` test that was
/// skipped is not failed for returning. Use it only for what this machine
/// cannot do, never to hide a failure.
pub fn skip(reason: &'static str) {
    *SKIPPED_BECAUSE.lock() = Some(reason);
}

/// The running test, if any.
pub fn current_test() -> Option<&'static KernelTest> {
    CURRENT_TEST
        .load(Ordering::Acquire)
        .checked_sub(1)
        .and_then(|index| all_tests().get(index))
}

/// `mode=list`: one line per test, then the count.
pub fn list_tests() -> ! {
    for test in all_tests() {
        match test.expected_panic {
            None => crate::println!("qmk: test {}", test.name()),
            Some(expected) => {
                crate::println!("qmk: test {} should_panic {expected}", test.name())
            }
        }
    }
    crate::println!("qmk: listed {}", all_tests().len());
    qemu::exit(RunOutcome::Success)
}

/// The tests `filter` selects: an exact name match wins (and may be a
/// `should_panic` test); otherwise every ordinary test whose name contains
/// the filter (all ordinary tests without a filter).
fn selected_tests(
    filter: Option<&str>,
) -> impl Iterator<Item = (usize, &'static KernelTest)> + use<'_> {
    let tests = all_tests();
    let exact = filter.and_then(|filter| tests.iter().position(|test| test.name().equals(filter)));
    tests
        .iter()
        .enumerate()
        .filter(move |(index, test)| match exact {
            Some(exact_index) => *index == exact_index,
            None => {
                test.expected_panic.is_none()
                    && filter.is_none_or(|filter| test.name().contains(filter))
            }
        })
}

/// `mode=test`: runs the selected tests and ends the boot.
pub fn run_tests(filter: Option<&str>) -> ! {
    let mut selected_any = false;
    for (index, test) in selected_tests(filter) {
        selected_any = true;
        CURRENT_TEST.store(index + 1, Ordering::Release);
        (test.run)();
        CURRENT_TEST.store(0, Ordering::Release);
        if let Some(reason) = SKIPPED_BECAUSE.lock().take() {
            PASSED.fetch_add(1, Ordering::AcqRel);
            crate::println!("qmk: test {} ... ok (skipped: {reason})", test.name());
            continue;
        }
        if let Some(expected) = test.expected_panic {
            FAILED.fetch_add(1, Ordering::AcqRel);
            crate::println!("qmk: test {} ... FAILED", test.name());
            crate::println!(
                "qmk: the test returned, but it should have panicked with a message containing '{expected}'"
            );
            finish();
        }
        PASSED.fetch_add(1, Ordering::AcqRel);
        crate::println!("qmk: test {} ... ok", test.name());
    }
    if !selected_any {
        crate::println!(
            "qmk: error: no test matches '{}'",
            filter.unwrap_or_default()
        );
    }
    finish()
}

/// Prints the summary line and ends the boot: success only if tests ran
/// and none failed.
fn finish() -> ! {
    let passed = PASSED.load(Ordering::Acquire);
    let failed = FAILED.load(Ordering::Acquire);
    crate::emergency_println!("qmk: {passed} passed, {failed} failed");
    let outcome = if failed == 0 && passed > 0 {
        RunOutcome::Success
    } else {
        RunOutcome::Failure
    };
    qemu::exit(outcome)
}

/// Ends the boot after a fatal error (panic or exception). If a test is
/// running, prints its `FAILED` line first, then `print_details`, then the
/// summary; outside a test, just the details.
pub fn fail_run(print_details: impl FnOnce()) -> ! {
    let running = current_test();
    if let Some(test) = running {
        CURRENT_TEST.store(0, Ordering::Release);
        FAILED.fetch_add(1, Ordering::AcqRel);
        crate::emergency_println!("qmk: test {} ... FAILED", test.name());
    }
    print_details();
    if let Some(test) = running {
        crate::emergency_println!("qmk: (while running test {})", test.name());
        finish();
    }
    qemu::exit(RunOutcome::Failure)
}

/// Called by the panic handler with the formatted message: if the running
/// test expects this panic, reports it as passed and ends the boot with
/// success; otherwise returns.
pub fn accept_expected_panic(message: &str) {
    let Some(test) = current_test() else { return };
    let Some(expected) = test.expected_panic else {
        return;
    };
    if message.contains(expected) {
        CURRENT_TEST.store(0, Ordering::Release);
        PASSED.fetch_add(1, Ordering::AcqRel);
        crate::emergency_println!(
            "qmk: test {} ... ok (panicked as expected: {message})",
            test.name()
        );
        finish();
    }
    crate::emergency_println!("qmk: the panic message does not contain the expected '{expected}'");
}
