//! The kernel console: formatted output to the serial port.
//!
//! Every line the host reads (test results, panics, exception reports) goes
//! through here. Normal output takes the console lock so lines from different
//! contexts do not interleave; the fatal paths (panic, exception) use
//! [`emergency_print`], which never waits for the lock, because the code that
//! holds it may be the very code that just failed.

use core::fmt::{self, Write};

use crate::sync::SpinLock;

use crate::arch::serial::SerialPort;

/// Taken with interrupts off, so that any context may print.
static CONSOLE: SpinLock<Option<SerialPort>> = SpinLock::new(None);

/// Initialises the serial port; output before this is dropped.
///
/// Starts with a newline: the firmware leaves its last message ("Booting
/// from ROM..") without one, and every `qmk:` line must begin a line.
pub fn init() {
    let mut port = SerialPort::init_console();
    let _ = port.write_str("\n");
    *CONSOLE.lock_irq() = Some(port);
}

/// Writes formatted text to the console (use [`print!`]/[`println!`]).
pub fn print(arguments: fmt::Arguments) {
    let mut console = CONSOLE.lock_irq();
    if let Some(port) = console.as_mut() {
        // The serial writer never fails; an Err could only come from a
        // `Display` impl, and there is nothing better to do than go on.
        let _ = port.write_fmt(arguments);
    }
}

/// Writes formatted text without taking the console lock.
///
/// For panic and exception reports only: the interrupted code may hold the
/// lock and will never release it. Output may interleave with that code's
/// half-written line, which is better than a silent hang.
pub fn emergency_print(arguments: fmt::Arguments) {
    let mut port = SerialPort::console();
    let _ = port.write_fmt(arguments);
}

/// Waits until every byte written so far has left the UART, so that ending
/// the run does not cut off the last line.
pub fn flush() {
    SerialPort::console().wait_until_transmitted();
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => ($crate::console::print(format_args!($($argument)*)));
}

/// Prints a line (`\n`-terminated, as the protocol requires) to the kernel console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($argument:tt)*) => ($crate::console::print(format_args!("{}\n", format_args!($($argument)*))));
}

/// Prints a line without taking the console lock; see [`emergency_print`].
#[macro_export]
macro_rules! emergency_println {
    ($($argument:tt)*) => (
        $crate::console::emergency_print(format_args!("{}\n", format_args!($($argument)*)))
    );
}
