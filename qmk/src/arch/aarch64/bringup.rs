//! Bring-up of the aarch64 port (issue 13): what stands in for the kernel
//! core until this arch module provides every name the core uses.
//!
//! The core (console, spin locks, critical sections, the scheduler, the test
//! harness, memory) is not built for aarch64 yet (`cfg(qmk_arch_bringup)`,
//! set by `build.rs`). Meanwhile this module gives the arch code what it
//! needs from the core — lock-free console output, the run's failure path,
//! a panic handler, "pinned to this CPU" — and runs the arch's own checks,
//! reporting them in the core's serial protocol (`docs/kernel-protocol.md`:
//! `qmk: test NAME ... ok`, `qmk: N passed, N failed`, exit status 33/35),
//! so that xtask can drive an aarch64 boot already.
//!
//! TODO(issue 13): replace every item here by the core's own once the
//! aarch64 arch module provides: the `PerCpu` block through TPIDR_EL1 and
//! the per-CPU field accessors; interrupt enable/disable/`in_interrupt`;
//! the IRQ path (GICv3) with `set_interrupt_handler`, the timer tick and
//! IPIs (SGIs); the scheduler's switch request (SVC) and thread frames; the
//! clock (CNTPCT); CPU discovery and PSCI `CPU_ON`; kernel paging with the
//! core's API (`init`, `direct_map_address`, `map_page`, the window
//! region); and quickmap's `Mmu` for aarch64. Then this file goes.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, CurrentEL, DAIF};

use super::fault_probe::{self, FaultExpectation};
use super::firmware::{self, MachineDescription};
use super::serial::SerialPort;
use super::{qemu_exit, VirtAddr};
use crate::boot_info::BootInfo;
use crate::boot_options::{BootMode, BootOptions};
use crate::static_storage::StaticStorage;

/// The statuses of the protocol: QEMU exits with `(v << 1) | 1`.
const EXIT_SUCCESS: u32 = 0x10;
const EXIT_FAILURE: u32 = 0x11;

/// Writes to the console without a lock (the core's `emergency_print`).
pub fn emergency_print(arguments: fmt::Arguments) {
    let _ = SerialPort::console().write_fmt(arguments);
}

macro_rules! bringup_println {
    ($($argument:tt)*) => (
        $crate::arch::bringup::emergency_print(format_args!("{}\n", format_args!($($argument)*)))
    );
}

/// Ends the run with `value` (see `qemu_exit`); halts if that fails.
fn exit(value: u32) -> ! {
    SerialPort::console().wait_until_transmitted();
    qemu_exit::request_exit(value);
    super::halt_forever()
}

/// The check running now, for the failure report (index + 1; 0 = none).
static CURRENT_CHECK: AtomicUsize = AtomicUsize::new(0);
/// Checks passed so far.
static CHECKS_PASSED: AtomicUsize = AtomicUsize::new(0);

/// Prints the failure (`print_details`), the running check's `FAILED` line
/// and the summary, and ends the run as failed (the core's `fail_run`).
pub fn fail_run(print_details: impl FnOnce()) -> ! {
    let current = CURRENT_CHECK.load(Ordering::Acquire);
    if let Some(check) = current.checked_sub(1).and_then(|index| CHECKS.get(index)) {
        bringup_println!("qmk: test {} ... FAILED", check.name);
    }
    print_details();
    let passed = CHECKS_PASSED.load(Ordering::Acquire);
    bringup_println!("qmk: {passed} passed, 1 failed");
    exit(EXIT_FAILURE)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    DAIF.write(DAIF::I::Masked + DAIF::F::Masked);
    fail_run(|| match info.location() {
        Some(location) => bringup_println!(
            "qmk: PANIC: {} at {}:{}",
            info.message(),
            location.file(),
            location.line()
        ),
        None => bringup_println!("qmk: PANIC: {}", info.message()),
    })
}

/// Each CPU's fault expectation (the core keeps it in `cpu::PerCpu`).
static FAULT_EXPECTATIONS: [FaultExpectation; firmware::MAX_FIRMWARE_CPUS] =
    [const { FaultExpectation::new() }; firmware::MAX_FIRMWARE_CPUS];

/// This CPU's fault expectation, for the abort handler.
pub fn this_cpu_fault_expectation() -> &'static FaultExpectation {
    &FAULT_EXPECTATIONS[super::percpu::cpu_index()]
}

/// Keeps the running code on this CPU while it lives (the core's
/// `PreemptGuard`): IRQs masked, restored on drop. Not `Send`.
pub struct PinnedToThisCpu {
    saved_daif: u64,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PinnedToThisCpu {
    pub fn new() -> Self {
        let saved_daif = DAIF.get();
        DAIF.write(DAIF::I::Masked);
        Self {
            saved_daif,
            _not_send: core::marker::PhantomData,
        }
    }

    /// This CPU's fault expectation, borrowed while pinned.
    pub fn fault_expectation(&self) -> &'static FaultExpectation {
        this_cpu_fault_expectation()
    }
}

impl Drop for PinnedToThisCpu {
    fn drop(&mut self) {
        DAIF.set(self.saved_daif);
    }
}

static BOOT_INFO: StaticStorage<BootInfo> = StaticStorage::new(BootInfo::empty());

/// One check of the arch code, reported as test `NAME`.
struct Check {
    name: &'static str,
    run: fn(&MachineDescription),
}

const CHECKS: &[Check] = &[
    Check {
        name: "arch::boot::runs_at_el1",
        run: runs_at_el1,
    },
    Check {
        name: "arch::firmware::device_tree_describes_the_machine",
        run: device_tree_describes_the_machine,
    },
    Check {
        name: "arch::fault_probe::probe_reads_mapped_memory",
        run: probe_reads_mapped_memory,
    },
    Check {
        name: "arch::fault_probe::expected_fault_is_recovered",
        run: expected_fault_is_recovered,
    },
];

/// The bootstrap CPU's bring-up: read the device tree, then list or run the
/// checks as the boot options say.
pub fn boot_cpu_main(device_tree_from_x0: u64) -> ! {
    bringup_println!("");
    let boot_info = BOOT_INFO.claim("boot info");
    // SAFETY: x0 as QEMU left it; the MMU is off (RAM is read in place).
    let machine = match unsafe { firmware::read_device_tree(device_tree_from_x0, boot_info) } {
        Ok(machine) => machine,
        Err(error) => {
            bringup_println!("qmk: error: {error}");
            exit(EXIT_FAILURE);
        }
    };
    let options = match BootOptions::parse(boot_info.command_line()) {
        Ok(options) => options,
        Err(error) => {
            bringup_println!("qmk: error: {error}");
            exit(EXIT_FAILURE);
        }
    };
    bringup_println!(
        "qmk: aarch64 bring-up: EL{}, {} CPUs in the device tree, PSCI over {:?}, device tree at {:#x}",
        CurrentEL.read(CurrentEL::EL),
        machine.cpu_count,
        machine.psci_conduit,
        machine.device_tree.start
    );
    match options.mode {
        BootMode::List => {
            for check in CHECKS {
                bringup_println!("qmk: test {}", check.name);
            }
            bringup_println!("qmk: listed {}", CHECKS.len());
            exit(EXIT_SUCCESS)
        }
        BootMode::Test => run_checks(&machine, options.test_filter),
        other => {
            bringup_println!(
                "qmk: error: mode {other:?} is not available on aarch64 yet (issue 13: the kernel core is not ported)"
            );
            exit(EXIT_FAILURE)
        }
    }
}

fn run_checks(machine: &MachineDescription, filter: Option<&str>) -> ! {
    let selected = |check: &Check| {
        filter.is_none_or(|filter| {
            CHECKS.iter().any(|other| other.name == filter) && check.name == filter
                || !CHECKS.iter().any(|other| other.name == filter) && check.name.contains(filter)
        })
    };
    if !CHECKS.iter().any(selected) {
        bringup_println!("qmk: error: no test matches '{}'", filter.unwrap_or(""));
        bringup_println!("qmk: 0 passed, 0 failed");
        exit(EXIT_FAILURE);
    }
    for (index, check) in CHECKS.iter().enumerate().filter(|(_, check)| selected(check)) {
        CURRENT_CHECK.store(index + 1, Ordering::Release);
        (check.run)(machine);
        CURRENT_CHECK.store(0, Ordering::Release);
        CHECKS_PASSED.fetch_add(1, Ordering::AcqRel);
        bringup_println!("qmk: test {} ... ok", check.name);
    }
    bringup_println!(
        "qmk: {} passed, 0 failed",
        CHECKS_PASSED.load(Ordering::Acquire)
    );
    exit(EXIT_SUCCESS)
}

fn runs_at_el1(_machine: &MachineDescription) {
    let level = CurrentEL.read(CurrentEL::EL);
    assert_eq!(level, 1, "the kernel must run at EL1 (dropped from EL2 if entered there), but runs at EL{level}");
}

fn device_tree_describes_the_machine(machine: &MachineDescription) {
    assert!(
        machine.cpu_count >= 1,
        "the device tree lists no CPU"
    );
    assert_ne!(machine.gic_distributor, 0, "no GIC distributor address");
    assert_ne!(machine.gic_redistributors, 0, "no GIC redistributor address");
}

fn probe_reads_mapped_memory(_machine: &MachineDescription) {
    static READABLE: u8 = 0xa5;
    let address = VirtAddr::from_ptr(&READABLE);
    // SAFETY: a byte of this kernel's rodata: RAM, no side effects, never
    // written.
    let byte = unsafe { fault_probe::probe_read_u8(address) };
    assert_eq!(byte, Ok(0xa5), "a probe of mapped memory must read it");
}

fn expected_fault_is_recovered(_machine: &MachineDescription) {
    // With the MMU off every address is physical; one beyond the CPU's
    // physical address range faults (an address size fault). With the MMU
    // on (TODO step 3) an unmapped kernel address is used instead.
    let unreachable = VirtAddr::new(0x00ff_0000_0000_0000);
    let record = fault_probe::expect_page_fault(unreachable..unreachable + 1, || {
        // SAFETY: the address is not RAM or a device: the read has no effect
        // beyond the fault it is expected to raise.
        let result = unsafe { fault_probe::probe_read_u8(unreachable) };
        assert!(result.is_err(), "the probe of {:#x} must fault", unreachable.as_u64());
    });
    assert_eq!(record.address, unreachable, "the recorded fault address is FAR");
    assert!(!record.was_write(), "the probe read, but the syndrome says write");
}

/// Entry of a CPU started by PSCI (not yet used: TODO step 4).
#[no_mangle]
extern "C" fn qmk_aarch64_secondary_cpu_entry(_argument: u64) -> ! {
    super::halt_forever()
}
