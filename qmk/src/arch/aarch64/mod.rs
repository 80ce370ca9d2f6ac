//! aarch64 support (QEMU `virt`, GICv3): boot at EL1 (dropping from EL2),
//! exception vectors with decoded reports, fault probes, the MMU, the PL011
//! console, the device tree, the GICv3 and SGIs, the generic timer, SMP
//! through PSCI `CPU_ON`, and ending the run through semihosting.
//! It defines the names the kernel core uses (see `arch`), as x86_64 does.

mod address;
pub mod bench_clock;
mod boot;
mod context;
pub mod counters;
pub mod exceptions;
pub mod fault_probe;
pub mod firmware;
pub mod gic;
pub mod interrupts;
pub mod ipi;
mod kernel_tests;
pub mod paging;
pub mod percpu;
pub mod pmu;
pub mod qemu_exit;
pub mod quickmap_backend;
pub mod serial;
pub mod smp_boot;
pub mod stacks;
pub mod timer;

/// The clock the kernel reads (`read`, `hz`, `delay_us`): the generic
/// timer's counter.
pub use self::timer as clock;
pub use address::{PhysAddr, PhysFrame, VirtAddr};
pub use context::{new_thread_frame, request_switch, switch_request_of};

/// Stops this CPU for good: interrupts masked, then `wfi` in a loop.
pub fn halt_forever() -> ! {
    use aarch64_cpu::registers::Writeable;
    aarch64_cpu::registers::DAIF.write(
        aarch64_cpu::registers::DAIF::D::Masked
            + aarch64_cpu::registers::DAIF::A::Masked
            + aarch64_cpu::registers::DAIF::I::Masked
            + aarch64_cpu::registers::DAIF::F::Masked,
    );
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// Physical ranges inside usable RAM the frame allocator must never hand
/// out: the kernel image and the device tree.
pub fn reserved_physical_ranges() -> [core::ops::Range<PhysAddr>; 2] {
    let tree = firmware::machine().device_tree.clone();
    [
        kernel_image(),
        PhysAddr::new(tree.start)..PhysAddr::new(tree.end),
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
