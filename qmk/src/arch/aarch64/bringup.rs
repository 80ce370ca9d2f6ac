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
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{CurrentEL, ReadWriteable, Readable, Writeable, DAIF};

use super::fault_probe::{self, FaultExpectation};
use super::firmware::{self, MachineDescription};
use super::serial::SerialPort;
use super::{gic, paging, qemu_exit, smp_boot, timer, PhysAddr, VirtAddr};
use crate::boot_info::{BootInfo, MemoryKind};
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

/// Physical RAM above the direct map.
static HIGH_MEMORY: spin::Once<core::ops::Range<u64>> = spin::Once::new();

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
    Check {
        name: "arch::paging::direct_map_reaches_low_memory",
        run: direct_map_reaches_low_memory,
    },
    Check {
        name: "arch::paging::high_memory_is_unmapped",
        run: high_memory_is_unmapped,
    },
    Check {
        name: "arch::paging::window_region_is_unmapped",
        run: window_region_is_unmapped,
    },
    Check {
        name: "arch::paging::kernel_text_is_read_only",
        run: kernel_text_is_read_only,
    },
    Check {
        name: "arch::smp::every_listed_cpu_is_online",
        run: every_listed_cpu_is_online,
    },
    Check {
        name: "arch::timer::ticks_arrive_on_every_cpu",
        run: ticks_arrive_on_every_cpu,
    },
    Check {
        name: "arch::gic::sgi_reaches_every_cpu",
        run: sgi_reaches_every_cpu,
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
    let ram = boot_info
        .memory_regions()
        .iter()
        .filter(|region| region.kind == MemoryKind::Usable)
        .map(|region| region.start..region.end)
        .min_by_key(|range| range.start);
    let Some(ram) = ram else {
        bringup_println!("qmk: error: the device tree lists no RAM");
        exit(EXIT_FAILURE);
    };
    // As on x86_64, `dmap` MiB of low memory are direct-mapped (here counted
    // from the start of RAM), the rest is high memory.
    let direct_map_end = (ram.start + (options.direct_map_mib << 20)).min(ram.end);
    let direct_map_end = direct_map_end & !(paging::LARGE_PAGE_SIZE - 1);
    if let Err(error) = paging::init(PhysAddr::new(ram.start)..PhysAddr::new(direct_map_end)) {
        bringup_println!("qmk: error: building the kernel page tables: {error}");
        exit(EXIT_FAILURE);
    }
    bringup_println!(
        "qmk: aarch64 bring-up: MMU on, direct map {:#x}..{:#x} at {:#x}, high memory {:#x}..{:#x} unmapped",
        ram.start,
        direct_map_end,
        paging::DIRECT_MAP_BASE.as_u64() + ram.start,
        direct_map_end,
        ram.end
    );
    HIGH_MEMORY.call_once(|| direct_map_end..ram.end);
    // SAFETY: the device tree names these GICv3 blocks; `paging` maps them
    // identity as device memory; nothing else drives the GIC.
    if let Err(error) = unsafe {
        gic::init(
            machine.gic_distributor,
            machine.gic_redistributors,
            machine.cpu_count,
        )
    } {
        bringup_println!("qmk: error: setting up the GICv3: {error}");
        exit(EXIT_FAILURE);
    }
    gic::set_interrupt_handler(timer::TIMER_INTERRUPT_ID, on_tick);
    gic::set_interrupt_handler(PING_SGI, on_ping);
    start_interrupts_on_this_cpu(0);
    if let Err(error) = smp_boot::bringup_start_other_cpus(&machine) {
        bringup_println!("qmk: error: SMP start-up failed: {error}");
        exit(EXIT_FAILURE);
    }
    if machine.cpu_count > smp_boot::MAX_BRINGUP_CPUS {
        bringup_println!(
            "qmk: note: the device tree lists {} CPUs; the bring-up starts the first {}",
            machine.cpu_count,
            smp_boot::MAX_BRINGUP_CPUS
        );
    }
    bringup_println!(
        "qmk: aarch64 bring-up: {} CPUs online, timer at {} Hz",
        smp_boot::cpus_online(),
        timer::hz()
    );
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
    for (index, check) in CHECKS
        .iter()
        .enumerate()
        .filter(|(_, check)| selected(check))
    {
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
    assert_eq!(
        level, 1,
        "the kernel must run at EL1 (dropped from EL2 if entered there), but runs at EL{level}"
    );
}

fn device_tree_describes_the_machine(machine: &MachineDescription) {
    assert!(machine.cpu_count >= 1, "the device tree lists no CPU");
    assert_ne!(machine.gic_distributor, 0, "no GIC distributor address");
    assert_ne!(
        machine.gic_redistributors, 0,
        "no GIC redistributor address"
    );
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
    let unmapped = VirtAddr::new(paging::SCRATCH_REGION.start);
    let record = expect_unmapped(unmapped);
    assert!(
        !record.was_write(),
        "the probe read, but the syndrome says write"
    );
}

/// Probes a read of `address`, which must fault for want of a translation.
#[track_caller]
fn expect_unmapped(address: VirtAddr) -> fault_probe::PageFaultRecord {
    let record = fault_probe::expect_page_fault(address..address + 1, || {
        // SAFETY: the address is meant to be unmapped; if it were mapped it
        // would be kernel RAM, whose one-byte read has no effect.
        let result = unsafe { fault_probe::probe_read_u8(address) };
        assert!(
            result.is_err(),
            "the probe of {:#x} must fault",
            address.as_u64()
        );
    });
    assert_eq!(record.address, address, "the recorded fault address is FAR");
    assert!(
        record.page_was_not_present(),
        "{:#x} must fault for want of a translation, but the syndrome is {:#x}",
        address.as_u64(),
        record.error_code
    );
    record
}

fn direct_map_reaches_low_memory(_machine: &MachineDescription) {
    static MARKER: u64 = 0x5157_4d41_5053_4b00;
    let physical = PhysAddr::new(&raw const MARKER as u64);
    let through_direct_map = paging::direct_map_address(physical)
        .expect("the kernel image lies in low memory, inside the direct map");
    // SAFETY: the direct map maps `physical` (checked above) as normal
    // memory; the marker is an immutable static.
    let value = unsafe { core::ptr::read_volatile(through_direct_map.as_ptr::<u64>()) };
    assert_eq!(
        value, MARKER,
        "the direct map must show the same memory as the identity map"
    );
}

fn high_memory_is_unmapped(_machine: &MachineDescription) {
    let high = HIGH_MEMORY.get().expect("set at boot").clone();
    if high.is_empty() {
        return;
    }
    // The first and the last page of high memory, where the direct map would be.
    for physical in [high.start, high.end - paging::PAGE_SIZE] {
        expect_unmapped(paging::DIRECT_MAP_BASE + physical);
    }
}

fn window_region_is_unmapped(_machine: &MachineDescription) {
    // The leaf table exists (init made it), yet no window entry is valid.
    let leaf = paging::window_leaf_table();
    // SAFETY: the pointer is to a static table; entries are atomics.
    let valid = unsafe { &*leaf }
        .iter()
        .filter(|entry| entry.load(Ordering::Relaxed) & 1 != 0)
        .count();
    assert_eq!(valid, 0, "no window is mapped before quickmap maps one");
    expect_unmapped(VirtAddr::new(paging::WINDOW_REGION.start));
}

fn kernel_text_is_read_only(_machine: &MachineDescription) {
    let text = VirtAddr::new(kernel_text_start());
    let record = fault_probe::expect_page_fault(text..text + 1, || {
        // SAFETY: kernel text is mapped read-only, so the write faults and
        // changes nothing; were it writable, the check fails right after
        // having overwritten the first byte of the boot code, which has run.
        let result = unsafe { fault_probe::probe_write_u8(text, 0) };
        assert!(result.is_err(), "a write to kernel text must fault");
    });
    assert!(record.was_write(), "the fault must be the write's");
    assert!(
        !record.page_was_not_present(),
        "kernel text is mapped: the write must be a permission fault, not a translation fault (syndrome {:#x})",
        record.error_code
    );
}

fn kernel_text_start() -> u64 {
    extern "C" {
        static __text_start: u8;
    }
    (&raw const __text_start) as u64
}

/// The first Rust code on a CPU started by PSCI (see `boot`, `smp_boot`):
/// on its boot stack, MMU off, exceptions masked.
#[no_mangle]
extern "C" fn qmk_aarch64_secondary_cpu_entry(cpu_index: u64) -> ! {
    let cpu_index = cpu_index as usize;
    super::percpu::install_this_cpu_index(cpu_index);
    super::exceptions::install_on_this_cpu();
    paging::enable_on_this_cpu();
    gic::init_this_cpu(cpu_index);
    start_interrupts_on_this_cpu(cpu_index);
    smp_boot::mark_this_cpu_online();
    loop {
        aarch64_cpu::asm::wfi();
    }
}

/// The tick period of the bring-up timer.
const TICK_PERIOD_US: u64 = 4000;
/// The SGI the bring-up checks send.
const PING_SGI: u32 = 1;
/// Ticks and pings each CPU handled.
static TICKS: [AtomicU64; smp_boot::MAX_BRINGUP_CPUS] =
    [const { AtomicU64::new(0) }; smp_boot::MAX_BRINGUP_CPUS];
static PINGS: [AtomicU64; smp_boot::MAX_BRINGUP_CPUS] =
    [const { AtomicU64::new(0) }; smp_boot::MAX_BRINGUP_CPUS];

fn on_tick(_frame: &mut super::exceptions::InterruptFrame) {
    TICKS[super::percpu::cpu_index()].fetch_add(1, Ordering::Relaxed);
}

fn on_ping(_frame: &mut super::exceptions::InterruptFrame) {
    PINGS[super::percpu::cpu_index()].fetch_add(1, Ordering::Relaxed);
}

/// Enables this CPU's timer interrupt and the ping SGI, starts the tick and
/// unmasks IRQs.
fn start_interrupts_on_this_cpu(cpu_index: usize) {
    for intid in [timer::TIMER_INTERRUPT_ID, PING_SGI] {
        if let Err(error) = gic::enable_private_interrupt(intid, cpu_index) {
            panic!("enabling interrupt {intid} on CPU {cpu_index}: {error}");
        }
    }
    timer::start_periodic(TICK_PERIOD_US);
    DAIF.modify(DAIF::I::Unmasked);
}

/// Waits up to `seconds` for `done`; false on time-out.
fn wait_until(seconds: u64, done: impl Fn() -> bool) -> bool {
    let deadline = timer::read() + seconds * timer::hz();
    while !done() {
        if timer::read() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn every_listed_cpu_is_online(machine: &MachineDescription) {
    let expected = machine.cpu_count.min(smp_boot::MAX_BRINGUP_CPUS);
    assert_eq!(
        smp_boot::cpus_online(),
        expected,
        "every CPU of the device tree (up to {}) must be online",
        smp_boot::MAX_BRINGUP_CPUS
    );
}

fn ticks_arrive_on_every_cpu(_machine: &MachineDescription) {
    let cpus = smp_boot::cpus_online();
    let start: [u64; smp_boot::MAX_BRINGUP_CPUS] =
        core::array::from_fn(|index| TICKS[index].load(Ordering::Relaxed));
    let all_ticked = wait_until(5, || {
        (0..cpus).all(|index| TICKS[index].load(Ordering::Relaxed) >= start[index] + 3)
    });
    assert!(
        all_ticked,
        "every CPU must see 3 timer ticks within 5 s; ticks since the check began: {:?}",
        core::array::from_fn::<u64, { smp_boot::MAX_BRINGUP_CPUS }, _>(|index| TICKS[index]
            .load(Ordering::Relaxed)
            - start[index])
    );
}

fn sgi_reaches_every_cpu(_machine: &MachineDescription) {
    let cpus = smp_boot::cpus_online();
    for (index, pings) in PINGS.iter().enumerate().take(cpus) {
        let before = pings.load(Ordering::Relaxed);
        if let Err(error) = gic::send_sgi(PING_SGI, smp_boot::mpidr_of(index)) {
            panic!("sending SGI {PING_SGI} to CPU {index}: {error}");
        }
        let arrived = wait_until(5, || pings.load(Ordering::Relaxed) > before);
        assert!(
            arrived,
            "SGI {PING_SGI} sent to CPU {index} (MPIDR {:#x}) was not handled within 5 s",
            smp_boot::mpidr_of(index)
        );
    }
}
