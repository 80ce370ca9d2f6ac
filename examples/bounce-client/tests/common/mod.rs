//! Catching a panic with where it says it happened: a panic hook records the message
//! and the `Location` for the thread that asked, so the tests can check that quickmap's
//! rule panics name the caller's line (`#[track_caller]`).

#![allow(dead_code)] // Each test file uses what it needs.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A panic caught by [`catch`].
#[derive(Debug)]
pub struct Caught {
    /// The panic message.
    pub message: String,
    /// The file of the panic's location.
    pub file: String,
    /// The line of the panic's location.
    pub line: u32,
}

thread_local! {
    /// `Some` while this thread catches with [`catch`]: what it caught so far.
    static CATCHING: RefCell<Option<Option<Caught>>> = const { RefCell::new(None) };
}

/// Installs, once per process, a hook that records panics of threads inside [`catch`]
/// and hands every other panic to the hook it replaced (so failing tests still print).
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(text) => (*text).to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default(),
            };
            let (file, line) = info
                .location()
                .map_or((String::new(), 0), |at| (at.file().to_string(), at.line()));
            let recorded = CATCHING.with(|catching| match catching.borrow_mut().as_mut() {
                Some(slot) => {
                    *slot = Some(Caught {
                        message,
                        file,
                        line,
                    });
                    true
                }
                None => false,
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, which must panic, and returns the panic's message and location.
///
/// # Panics
///
/// If `f` returns.
#[track_caller]
pub fn catch<R>(f: impl FnOnce() -> R) -> Caught {
    install_hook();
    CATCHING.with(|catching| *catching.borrow_mut() = Some(None));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let caught = CATCHING
        .with(|catching| catching.borrow_mut().take())
        .flatten();
    match (result, caught) {
        (Err(_), Some(caught)) => caught,
        (Err(_), None) => panic!("a panic that the hook did not record"),
        (Ok(_), _) => panic!("expected a panic, but the code returned"),
    }
}

/// `catch!(expr)`: the panic of `expr`, and the line `catch!` is on. Keep the call on
/// one line, so that the line of `expr` is that line. (`#[macro_use] mod common;`)
macro_rules! catch {
    ($call:expr) => {
        ($crate::common::catch(|| $call), line!())
    };
}

/// Asserts that `caught` is the panic of quickmap's rule `rule`, reported at `line` of
/// the test file `file`, and that its message ends with `remedy` (what to do).
#[track_caller]
pub fn assert_rule(caught: &Caught, rule: &str, file: &str, line: u32, remedy: &str) {
    let prefix = format!("quickmap: {rule}");
    assert!(
        caught.message.starts_with(&prefix),
        "expected a message starting with {prefix:?}, got {:?}",
        caught.message
    );
    assert_eq!(
        (caught.file.as_str(), caught.line),
        (file, line),
        "the panic of `{rule}` must point at the caller's line, not inside quickmap: {caught:?}"
    );
    let (_, what_to_do) = caught
        .message
        .rsplit_once("; ")
        .unwrap_or_else(|| panic!("no remedy after the rule's facts: {:?}", caught.message));
    assert!(
        what_to_do.contains(remedy),
        "the message of `{rule}` must end with what to do ({remedy:?}): {:?}",
        caught.message
    );
}
