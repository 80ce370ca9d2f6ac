//! The PL011 UART of QEMU's `virt` machine, where `-serial` (or
//! `-nographic`) lands.
//!
//! Written by hand rather than taken from a crate: the kernel only transmits,
//! which needs two registers (data, flags), and QEMU's PL011 needs no
//! programming (baud rate and line settings are ignored).

use core::fmt;

use super::paging::DEVICE_UART_BASE;

/// Data register: a write queues one byte.
const DATA_OFFSET: usize = 0x00;
/// Flag register.
const FLAGS_OFFSET: usize = 0x18;
/// Flags: the transmit FIFO is full.
const FLAG_TRANSMIT_FULL: u32 = 1 << 5;
/// Flags: the UART is still sending.
const FLAG_BUSY: u32 = 1 << 3;

/// A handle to the console UART.
pub struct SerialPort {
    base: usize,
}

impl SerialPort {
    /// The console UART, ready for output (QEMU's PL011 needs no set-up).
    pub fn init_console() -> Self {
        Self::console()
    }

    /// A handle to the console UART without programming it; several handles
    /// only interleave output bytes, which is harmless.
    pub fn console() -> Self {
        Self {
            base: DEVICE_UART_BASE as usize,
        }
    }

    fn read_flags(&self) -> u32 {
        // SAFETY: `base` is the PL011's register block (identity-mapped as
        // device memory once the MMU is on); reading the flag register has
        // no side effect.
        unsafe { core::ptr::read_volatile((self.base + FLAGS_OFFSET) as *const u32) }
    }

    fn write_byte(&mut self, byte: u8) {
        while self.read_flags() & FLAG_TRANSMIT_FULL != 0 {
            core::hint::spin_loop();
        }
        // SAFETY: as in `read_flags`; a write to the data register queues
        // one byte for transmission and touches no memory.
        unsafe {
            core::ptr::write_volatile((self.base + DATA_OFFSET) as *mut u32, u32::from(byte))
        };
    }

    /// Spins until the transmitter has sent every queued byte.
    pub fn wait_until_transmitted(&mut self) {
        // A bounded wait: a wedged UART must not turn a finished run into a hang.
        let mut budget = 1_000_000u32;
        while self.read_flags() & FLAG_BUSY != 0 && budget > 0 {
            budget -= 1;
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for SerialPort {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            self.write_byte(byte);
        }
        Ok(())
    }
}
