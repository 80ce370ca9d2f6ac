//! The COM1 16550 UART, through the `uart_16550` crate.

use core::fmt;

use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::LSR;
use uart_16550::{Config, Uart16550};

/// I/O base of COM1, where QEMU's `-serial` lands.
const COM1_BASE: u16 = 0x3f8;

/// A handle to COM1.
pub struct SerialPort {
    uart: Uart16550<PioBackend>,
}

impl SerialPort {
    /// Programs the console's UART, COM1 (baud rate, 8N1, FIFOs), and
    /// returns a handle to it.
    pub fn init_console() -> Self {
        let mut port = Self::console();
        // QEMU's UART accepts any configuration; if programming it failed
        // there is no other channel to say so, and output may still work.
        let _ = port.uart.init(Config::default());
        port
    }

    /// A second handle to COM1 without reprogramming it, for the fatal-error
    /// paths that must not wait for the console lock.
    pub fn console() -> Self {
        // SAFETY: COM1's eight ports belong to the UART in every PC-compatible
        // machine (QEMU's included); accessing them touches no memory.
        // Several handles only interleave output bytes, which is harmless.
        let uart = unsafe { Uart16550::new_port(COM1_BASE) }
            .expect("COM1's register block lies inside the 16-bit port space");
        Self { uart }
    }

    /// Spins until the transmitter has sent every queued byte.
    pub fn wait_until_transmitted(&mut self) {
        // A bounded wait: a wedged UART must not turn a finished run into a hang.
        let mut budget = 1_000_000u32;
        while !self.uart.lsr().contains(LSR::TRANSMITTER_EMPTY) && budget > 0 {
            budget -= 1;
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for SerialPort {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.uart.send_bytes_exact(text.as_bytes());
        Ok(())
    }
}
