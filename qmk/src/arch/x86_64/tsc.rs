//! The time-stamp counter, calibrated once against the PIT.
//!
//! The TSC is the kernel's clock: QEMU's TCG derives it from one virtual
//! clock for all CPUs, so readings on different CPUs are comparable. Its
//! rate is measured at boot by letting PIT channel 2 (1.193182 MHz, its
//! gate and output reachable through port 0x61, no interrupt needed) count
//! down 10 ms.

use core::sync::atomic::{AtomicU64, Ordering};

use ::x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The current TSC value.
#[inline]
pub fn read() -> u64 {
    // SAFETY: `rdtsc` only reads the counter (CR4.TSD is clear in ring 0
    // anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC rate against the PIT (once, at boot, on one CPU).
pub fn calibrate() {
    let mut control: Port<u8> = Port::new(0x61);
    let mut command: Port<u8> = Port::new(0x43);
    let mut channel2: Port<u8> = Port::new(0x42);
    let latch = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // SAFETY: ports 0x61, 0x43 and 0x42 are the PIT's channel-2 gate,
    // mode/command and data ports; channel 2 drives only the (disabled)
    // speaker, so programming it affects nothing else.
    let elapsed = unsafe {
        // Gate high (bit 0), speaker off (bit 1).
        let value = control.read();
        control.write((value & !0x02) | 0x01);
        // Channel 2, low then high byte, mode 0 (interrupt on terminal count).
        command.write(0b1011_0000);
        channel2.write(latch as u8);
        channel2.write((latch >> 8) as u8);
        let start = read();
        // Bit 5: channel 2's output, which goes high at terminal count.
        while control.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        read() - start
    };
    let hz = elapsed * 1000 / CALIBRATION_MS;
    assert!(hz > 0, "the TSC did not advance during calibration");
    TSC_HZ.store(hz, Ordering::Release);
}

/// TSC ticks per second (0 before `calibrate`).
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Acquire)
}

/// Busy-waits `microseconds` by the TSC.
pub fn delay_us(microseconds: u64) {
    let ticks = hz() * microseconds / 1_000_000;
    let start = read();
    while read() - start < ticks {
        core::hint::spin_loop();
    }
}
