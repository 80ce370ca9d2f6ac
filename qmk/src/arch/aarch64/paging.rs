//! Kernel page tables. TODO(issue 13, step 3): the MMU.

/// The PL011 UART of QEMU `virt` (physical = virtual: identity-mapped).
pub const DEVICE_UART_BASE: u64 = 0x0900_0000;
