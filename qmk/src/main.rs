//! qmk — the proving-ground kernel for the `quickmap` facility.
//!
//! qmk boots under QEMU (PVH entry on x86_64, `-kernel` ELF on aarch64 `virt`),
//! builds its own page tables in which only the first `dmap` MiB of RAM are
//! direct-mapped, and runs in-kernel tests whose results
//! it reports on the serial console in the format `docs/kernel-protocol.md`
//! fixes. High memory is deliberately left unmapped: the only way to reach it
//! is a temporary mapping, which is what quickmap provides.
//!
//! How the pieces fit:
//! - `arch` — everything that knows the CPU, one module per architecture with
//!   the same names (`arch::x86_64`: PVH boot, descriptor tables, interrupt
//!   entry, local APIC, page tables, PAT; `arch::aarch64`: EL1 boot, exception
//!   vectors, GICv3, generic timer, PSCI, page tables with quickmap's MAIR):
//!   per-CPU accessors, the switch request, the tick and IPIs, SMP start-up,
//!   fault probes, the console UART, the QEMU exit, quickmap's backend.
//! - `memory` — the frame allocator (physical memory) and the kernel heap.
//! - `test_harness` + `kernel_tests` — test registry, runner and the tests.
//! - `qemu` — the only module that knows it runs under QEMU (the exit
//!   statuses; `arch::qemu_exit` writes them).
//!
//! The boot order is fixed by what each step needs: console first (so every
//! later failure can be reported), CPU tables next (so faults are reported
//! rather than triple-faulting), then frames, page tables and the heap.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod boot_info;
mod boot_options;
mod static_storage;

// The kernel core.
mod bench;
mod console;
pub mod cpu;
mod fault_expectation;
mod kernel_tests;
mod memory;
mod panic;
mod qemu;
pub mod sched;
pub mod smp;
pub mod sync;
mod test_harness;
pub mod vm;
mod workload;

use boot_info::BootInfo;
use boot_options::{BootMode, BootOptions};

/// The kernel proper, entered once on the bootstrap CPU by the arch boot code
/// after the console and the CPU's own tables (descriptor tables and PAT, or
/// exception vectors) are set up.
pub fn kernel_main(boot_info: &'static BootInfo) -> ! {
    let options = match BootOptions::parse(boot_info.command_line()) {
        Ok(options) => options,
        Err(error) => {
            println!("qmk: error: {error}");
            qemu::exit(qemu::RunOutcome::Failure);
        }
    };

    if let Err(error) = memory::init(boot_info, options.direct_map_mib) {
        println!("qmk: error: memory set-up failed: {error}");
        qemu::exit(qemu::RunOutcome::Failure);
    }

    // From here on every CPU runs the scheduler, and interrupts are on.
    if let Err(error) = smp::init(boot_info) {
        println!("qmk: error: SMP start-up failed: {error}");
        qemu::exit(qemu::RunOutcome::Failure);
    }

    // Every CPU is counted and waits in its scheduler; no thread has run yet,
    // so the window region is in place before anything can map a page.
    if let Err(error) = vm::quick::init() {
        println!("qmk: error: quickmap set-up failed: {error}");
        qemu::exit(qemu::RunOutcome::Failure);
    }

    match options.mode {
        BootMode::Run => workload::run(&options),
        BootMode::List => test_harness::list_tests(),
        BootMode::Test => test_harness::run_tests(options.test_filter),
        BootMode::Bench => bench::run(&options),
    }
}

/// The prebuilt `core` refers to this symbol for unwinding; with
/// `panic = "abort"` it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// The prebuilt `alloc` was compiled with unwinding, and its cleanup paths
/// call this to continue an unwind. With `panic = "abort"` no unwind ever
/// starts, so reaching it is a bug in these assumptions.
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    panic!("_Unwind_Resume called, but this kernel never unwinds (panic = \"abort\")");
}
