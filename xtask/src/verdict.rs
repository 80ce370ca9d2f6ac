//! How a boot ended, from QEMU's exit status (`docs/kernel-protocol.md`, "Exit codes").

use std::fmt;
use std::time::Duration;

/// QEMU's exit status when the kernel wrote 0x10 (success) to `isa-debug-exit`:
/// QEMU exits with `(value << 1) | 1`.
pub const KERNEL_SUCCESS_STATUS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status when the kernel wrote 0x11 (failure).
pub const KERNEL_FAILURE_STATUS: i32 = (0x11 << 1) | 1;

/// How one boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootVerdict {
    /// The kernel reported success (status 33).
    Success,
    /// The kernel reported failure (status 35).
    KernelFailure,
    /// QEMU exited with 0: with `-no-reboot`, a guest reset (typically a triple fault)
    /// ends QEMU instead of restarting the machine, and the kernel never reached
    /// `isa-debug-exit`.
    Reset,
    /// QEMU exited with some other status, e.g. 1 when it rejects its command line.
    OtherStatus(i32),
    /// QEMU was killed by a signal (not by us).
    Signal(i32),
    /// The boot outlived its timeout and xtask killed QEMU.
    TimedOut(Duration),
}

impl BootVerdict {
    /// Maps how QEMU ended: its exit code if it exited, else the signal that killed it.
    pub fn from_exit(code: Option<i32>, signal: Option<i32>) -> BootVerdict {
        match (code, signal) {
            (Some(KERNEL_SUCCESS_STATUS), _) => BootVerdict::Success,
            (Some(KERNEL_FAILURE_STATUS), _) => BootVerdict::KernelFailure,
            (Some(0), _) => BootVerdict::Reset,
            (Some(code), _) => BootVerdict::OtherStatus(code),
            (None, Some(signal)) => BootVerdict::Signal(signal),
            // Unix always gives one of the two; keep a value rather than panic.
            (None, None) => BootVerdict::OtherStatus(-1),
        }
    }

    /// Whether the boot counts as a success.
    pub fn is_success(self) -> bool {
        self == BootVerdict::Success
    }
}

impl fmt::Display for BootVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootVerdict::Success => write!(
                f,
                "the kernel reported success (QEMU exit status {KERNEL_SUCCESS_STATUS})"
            ),
            BootVerdict::KernelFailure => write!(
                f,
                "the kernel reported failure (QEMU exit status {KERNEL_FAILURE_STATUS})"
            ),
            BootVerdict::Reset => f.write_str(
                "QEMU exited with status 0: the guest reset without reporting (most likely \
                 a triple fault; -no-reboot turns the reset into an exit)",
            ),
            BootVerdict::OtherStatus(code) => write!(
                f,
                "QEMU exited with status {code}, which is not a kernel exit code (a QEMU \
                 error? see its messages above)"
            ),
            BootVerdict::Signal(signal) => write!(f, "QEMU was killed by signal {signal}"),
            BootVerdict::TimedOut(limit) => write!(
                f,
                "timed out after {} s; xtask killed QEMU (raise it with --timeout)",
                limit.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_statuses() {
        assert_eq!(KERNEL_SUCCESS_STATUS, 33);
        assert_eq!(KERNEL_FAILURE_STATUS, 35);
        assert_eq!(BootVerdict::from_exit(Some(33), None), BootVerdict::Success);
        assert_eq!(
            BootVerdict::from_exit(Some(35), None),
            BootVerdict::KernelFailure
        );
    }

    #[test]
    fn everything_else_fails() {
        assert_eq!(BootVerdict::from_exit(Some(0), None), BootVerdict::Reset);
        assert_eq!(
            BootVerdict::from_exit(Some(1), None),
            BootVerdict::OtherStatus(1)
        );
        assert_eq!(
            BootVerdict::from_exit(Some(34), None),
            BootVerdict::OtherStatus(34)
        );
        assert_eq!(
            BootVerdict::from_exit(None, Some(9)),
            BootVerdict::Signal(9)
        );
        assert_eq!(
            BootVerdict::from_exit(None, None),
            BootVerdict::OtherStatus(-1)
        );
        for verdict in [
            BootVerdict::KernelFailure,
            BootVerdict::Reset,
            BootVerdict::OtherStatus(1),
            BootVerdict::Signal(9),
            BootVerdict::TimedOut(Duration::from_secs(5)),
        ] {
            assert!(!verdict.is_success(), "{verdict:?}");
        }
        assert!(BootVerdict::Success.is_success());
    }

    #[test]
    fn reasons_name_the_cause() {
        assert!(BootVerdict::Reset.to_string().contains("triple fault"));
        assert!(BootVerdict::TimedOut(Duration::from_secs(7))
            .to_string()
            .starts_with("timed out after 7 s"));
        assert!(BootVerdict::Signal(15).to_string().contains("signal 15"));
        assert!(BootVerdict::OtherStatus(1).to_string().contains("status 1"));
    }
}
