//! x86_64 support: boot (PVH), per-CPU descriptor tables, interrupt entry,
//! page tables, PAT, fault probes, the serial port; and for SMP: per-CPU
//! data through GS, the local APIC, the TSC, ACPI CPU discovery and AP
//! start-up.

pub mod acpi;
pub mod ap_boot;
pub mod apic;
pub mod bench_clock;
mod boot;
mod context;
pub mod counters;
pub mod cpu_tables;
pub mod fault_probe;
pub mod interrupts;
pub mod ipi;
mod kernel_tests;
mod mem_intrinsics;
pub mod paging;
pub mod pat;
pub mod percpu;
mod pvh;
pub mod qemu_exit;
pub mod quickmap_backend;
pub mod serial;
pub mod smp_boot;
pub mod stacks;
pub mod timer;
pub mod tsc;

/// The clock the kernel reads (`read`, `hz`, `delay_us`): the TSC.
pub use self::tsc as clock;
pub use context::{new_thread_frame, request_switch, switch_request_of};

/// Stops this CPU for good: interrupts off, then `hlt` in a loop (an NMI
/// would wake it, so the loop halts again).
pub fn halt_forever() -> ! {
    ::x86_64::instructions::interrupts::disable();
    loop {
        ::x86_64::instructions::hlt();
    }
}

/// Physical and virtual addresses and 4 KiB frames: the `x86_64` crate's types.
pub use ::x86_64::{PhysAddr, VirtAddr};
pub type PhysFrame =
    ::x86_64::structures::paging::PhysFrame<::x86_64::structures::paging::Size4KiB>;

/// Memory below 1 MiB holds firmware and loader structures: never handed out.
const LOW_MEMORY_END: u64 = 1 << 20;

/// Physical ranges inside usable RAM the frame allocator must never hand
/// out: the first MiB (firmware, loader, the AP trampoline) and the kernel
/// image.
pub fn reserved_physical_ranges() -> [core::ops::Range<PhysAddr>; 2] {
    [
        PhysAddr::new(0)..PhysAddr::new(LOW_MEMORY_END),
        kernel_image(),
    ]
}

/// The bounds of the kernel image in physical memory (identity-mapped).
pub fn kernel_image() -> core::ops::Range<PhysAddr> {
    extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    PhysAddr::new((&raw const __kernel_start) as u64)
        ..PhysAddr::new((&raw const __kernel_end) as u64)
}
