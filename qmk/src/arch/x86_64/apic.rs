//! The local APIC (xAPIC, memory-mapped): identity, end-of-interrupt, the
//! timer, and inter-processor interrupts.
//!
//! xAPIC rather than x2APIC because QEMU 7.2's TCG does not emulate x2APIC
//! mode. The register page (physical 0xFEE0_0000 on every CPU; each CPU
//! sees its own APIC there) is mapped once, uncached, in the device region.
//! The legacy 8259 PICs are masked: every interrupt the kernel uses comes
//! from a local APIC.

use core::sync::atomic::{AtomicU64, Ordering};

use ::x86_64::instructions::port::Port;
use ::x86_64::registers::model_specific::Msr;
use ::x86_64::structures::paging::PageTableFlags;
use ::x86_64::{PhysAddr, VirtAddr};

use super::paging;

/// Vector of the local timer (the scheduler tick).
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector the APIC uses for spurious interrupts (no EOI for those).
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_PHYSICAL_BASE: u64 = 0xfee0_0000;

const REGISTER_ID: usize = 0x20;
const REGISTER_TASK_PRIORITY: usize = 0x80;
const REGISTER_EOI: usize = 0xb0;
const REGISTER_SPURIOUS: usize = 0xf0;
const REGISTER_ICR_LOW: usize = 0x300;
const REGISTER_ICR_HIGH: usize = 0x310;
const REGISTER_LVT_TIMER: usize = 0x320;
const REGISTER_LVT_LINT0: usize = 0x350;
const REGISTER_LVT_LINT1: usize = 0x360;
const REGISTER_LVT_ERROR: usize = 0x370;
const REGISTER_TIMER_INITIAL: usize = 0x380;
const REGISTER_TIMER_CURRENT: usize = 0x390;
const REGISTER_TIMER_DIVIDE: usize = 0x3e0;

const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration value for "divide by 16".
const TIMER_DIVIDE_BY_16: u32 = 0b0011;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;

/// Where the register page is mapped (set once by `map_registers`).
static REGISTERS: AtomicU64 = AtomicU64::new(0);
/// APIC timer counts per millisecond (divide by 16), from calibration.
static TIMER_COUNTS_PER_MS: AtomicU64 = AtomicU64::new(0);

fn register_pointer(register: usize) -> *mut u32 {
    let base = REGISTERS.load(Ordering::Acquire);
    assert!(
        base != 0,
        "the local APIC is used before its registers are mapped"
    );
    (base as usize + register) as *mut u32
}

fn read(register: usize) -> u32 {
    // SAFETY: the register page is mapped uncached at `REGISTERS` for the
    // whole run; `register` is one of the architectural offsets above, all
    // 16-byte aligned 32-bit registers, for which a read has no side effect.
    unsafe { register_pointer(register).read_volatile() }
}

fn write(register: usize, value: u32) {
    // SAFETY: as in `read`; writes to these registers only program this
    // CPU's APIC, which is what every caller intends.
    unsafe { register_pointer(register).write_volatile(value) }
}

/// Maps the APIC register page (once, on the bootstrap CPU, after the
/// kernel page tables exist) and masks the legacy PICs.
pub fn map_registers() -> Result<(), paging::MapError> {
    let address = VirtAddr::new(paging::DEVICE_REGION.start);
    let flags = PageTableFlags::WRITABLE
        | PageTableFlags::NO_EXECUTE
        | PageTableFlags::GLOBAL
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    paging::map_page(
        address,
        super::PhysFrame::containing_address(PhysAddr::new(APIC_PHYSICAL_BASE)),
        flags,
    )?;
    REGISTERS.store(address.as_u64(), Ordering::Release);
    mask_legacy_pics();
    Ok(())
}

fn mask_legacy_pics() {
    let mut master_data: Port<u8> = Port::new(0x21);
    let mut slave_data: Port<u8> = Port::new(0xa1);
    // SAFETY: writing 0xff to the PICs' data ports sets their interrupt
    // masks (OCW1); the kernel uses no legacy interrupt.
    unsafe {
        master_data.write(0xff);
        slave_data.write(0xff);
    }
}

/// Enables this CPU's APIC: software-enabled, spurious vector set, all
/// local interrupt lines but the timer masked, task priority 0.
pub fn enable_this_cpu() {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86_64);
    // setting the global enable bit keeps the base at its reset value.
    unsafe {
        let value = base_msr.read();
        base_msr.write(value | APIC_BASE_ENABLE);
    }
    write(
        REGISTER_SPURIOUS,
        SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR),
    );
    write(REGISTER_LVT_LINT0, LVT_MASKED);
    write(REGISTER_LVT_LINT1, LVT_MASKED);
    write(REGISTER_LVT_ERROR, LVT_MASKED);
    write(REGISTER_LVT_TIMER, LVT_MASKED);
    write(REGISTER_TASK_PRIORITY, 0);
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(REGISTER_ID) >> 24
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write(REGISTER_EOI, 0);
}

/// Measures the timer's counting rate against `delay`, a function that
/// busy-waits `milliseconds` by another clock (the calibrated TSC).
pub fn calibrate_timer(delay: impl Fn(u64)) {
    const CALIBRATION_MS: u64 = 10;
    write(REGISTER_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(REGISTER_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REGISTER_TIMER_INITIAL, u32::MAX);
    delay(CALIBRATION_MS);
    let elapsed = u32::MAX - read(REGISTER_TIMER_CURRENT);
    write(REGISTER_TIMER_INITIAL, 0);
    let per_ms = u64::from(elapsed) / CALIBRATION_MS;
    assert!(
        per_ms > 0,
        "the APIC timer did not count during calibration"
    );
    TIMER_COUNTS_PER_MS.store(per_ms, Ordering::Release);
}

/// APIC timer counts per millisecond (after `calibrate_timer`).
pub fn timer_counts_per_ms() -> u64 {
    TIMER_COUNTS_PER_MS.load(Ordering::Acquire)
}

/// Starts this CPU's periodic timer: one interrupt on `TIMER_VECTOR` every
/// `period_us` microseconds.
pub fn start_periodic_timer(period_us: u64) {
    let per_ms = timer_counts_per_ms();
    assert!(
        per_ms > 0,
        "the APIC timer is started before it was calibrated"
    );
    let count = (per_ms * period_us / 1000).clamp(1, u64::from(u32::MAX)) as u32;
    write(REGISTER_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(
        REGISTER_LVT_TIMER,
        LVT_TIMER_PERIODIC | u32::from(TIMER_VECTOR),
    );
    write(REGISTER_TIMER_INITIAL, count);
}

/// Writes the interrupt command register (destination first: writing the
/// low half sends). Interrupts are off meanwhile so that a handler on this
/// CPU cannot send its own IPI between the two writes.
fn send_command(destination_apic_id: u32, command: u32) {
    let were_enabled = super::interrupts::interrupts_enabled();
    super::interrupts::disable_interrupts();
    while read(REGISTER_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
    write(REGISTER_ICR_HIGH, destination_apic_id << 24);
    write(REGISTER_ICR_LOW, command);
    while read(REGISTER_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
    if were_enabled {
        super::interrupts::enable_interrupts();
    }
}

/// Sends a fixed interrupt on `vector` to the CPU with `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) {
    send_command(apic_id, ICR_LEVEL_ASSERT | u32::from(vector));
}

/// Sends INIT (assert) to `apic_id`: the first step of starting an AP.
pub fn send_init(apic_id: u32) {
    send_command(apic_id, ICR_DELIVERY_INIT | ICR_LEVEL_ASSERT);
}

/// Sends a start-up IPI: the AP starts in real mode at `page * 4096`.
pub fn send_startup(apic_id: u32, page: u8) {
    send_command(
        apic_id,
        ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | u32::from(page),
    );
}
