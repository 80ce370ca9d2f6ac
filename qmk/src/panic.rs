//! The panic handler.
//!
//! A panic prints `qmk: PANIC: <message> at <file>:<line>` and ends the run
//! as failed — unless the running test expects exactly this panic.

use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Formats into a fixed buffer, dropping what does not fit (the panic path
/// must not allocate: the heap may be what failed).
pub struct TruncatingWriter<'buffer> {
    buffer: &'buffer mut [u8],
    length: usize,
}

impl<'buffer> TruncatingWriter<'buffer> {
    pub fn new(buffer: &'buffer mut [u8]) -> Self {
        Self { buffer, length: 0 }
    }

    /// What was written (cut at a character boundary if it overflowed).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buffer[..self.length]) {
            Ok(text) => text,
            Err(error) => {
                let valid = &self.buffer[..error.valid_up_to()];
                core::str::from_utf8(valid).unwrap_or_default()
            }
        }
    }
}

impl Write for TruncatingWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.buffer.len() - self.length;
        let count = text.len().min(room);
        self.buffer[self.length..self.length + count].copy_from_slice(&text.as_bytes()[..count]);
        self.length += count;
        Ok(())
    }
}

/// The CPU that reports the run's panic; `NO_CPU` until the first panic.
static PANICKING_CPU: AtomicUsize = AtomicUsize::new(NO_CPU);
const NO_CPU: usize = usize::MAX;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // The panicking context must neither be preempted nor migrate while it
    // reports: another thread on this CPU could panic too and look like a
    // recursive panic.
    crate::arch::interrupts::disable_interrupts();
    // Per-CPU data is installed before any Rust code runs on a CPU.
    let cpu = crate::cpu::current_cpu_index();
    if let Err(reporter) =
        PANICKING_CPU.compare_exchange(NO_CPU, cpu, Ordering::AcqRel, Ordering::Acquire)
    {
        if reporter == cpu {
            // A panic while reporting one must not recurse.
            crate::emergency_println!(
                "qmk: PANIC: {} (while handling an earlier panic)",
                info.message()
            );
            crate::qemu::exit(crate::qemu::RunOutcome::Failure);
        }
        // Another CPU panicked first (often of the same cause, e.g. a test that
        // expects a panic on every CPU): it decides how the run ends, and this
        // CPU stays silent so as not to interleave with its report.
        crate::arch::halt_forever();
    }
    let mut buffer = [0u8; 512];
    let mut writer = TruncatingWriter::new(&mut buffer);
    let _ = write!(writer, "{}", info.message());
    let message = writer.as_str();

    crate::test_harness::accept_expected_panic(message);

    crate::test_harness::fail_run(|| match info.location() {
        Some(location) => crate::emergency_println!(
            "qmk: PANIC: {message} at {}:{}",
            location.file(),
            location.line()
        ),
        None => crate::emergency_println!("qmk: PANIC: {message}"),
    })
}
