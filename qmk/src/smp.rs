//! Multiprocessing: bringing the other CPUs up, and inter-processor
//! interrupts — to one CPU, to all others, "run this on every CPU and
//! wait", and the remote TLB shootdown built on it.
//!
//! Cross-CPU calls are serialised by one lock, taken with interrupts *on*:
//! a CPU waiting for the lock (or for the other CPUs' answers) keeps
//! answering other CPUs' calls, so two CPUs calling each other cannot
//! deadlock. The rule that follows: never make a cross-CPU call with
//! interrupts disabled (it panics).

use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::arch::interrupts::{
    end_of_interrupt, interrupts_enabled, set_interrupt_handler, InterruptFrame,
};
use crate::arch::percpu::percpu_increment_u64;
use crate::arch::{apic, ipi, VirtAddr};
use crate::cpu::{self, PreemptGuard, MAX_CPUS};
use crate::sync::SpinLock;

static CPUS_LISTED_BY_FIRMWARE: AtomicUsize = AtomicUsize::new(0);

/// How many enabled processors the ACPI MADT lists.
pub fn cpus_listed_by_firmware() -> usize {
    CPUS_LISTED_BY_FIRMWARE.load(Ordering::Acquire)
}

/// Why SMP start-up failed.
#[derive(Debug)]
pub enum SmpError {
    NoRsdp,
    Acpi(acpi::AcpiError),
    Trampoline(crate::arch::paging::MapError),
    Apic(crate::arch::paging::MapError),
    ApStart(crate::arch::ap_boot::ApStartError),
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::NoRsdp => write!(formatter, "the boot loader gave no ACPI RSDP address"),
            Self::Acpi(error) => write!(formatter, "reading the ACPI MADT: {error:?}"),
            Self::Trampoline(error) => write!(formatter, "installing the AP trampoline: {error}"),
            Self::Apic(error) => write!(formatter, "mapping the local APIC: {error}"),
            Self::ApStart(error) => write!(formatter, "{error}"),
        }
    }
}

/// Sets up the bootstrap CPU's APIC, timer calibration and scheduler, then
/// starts every other enabled CPU of the MADT; returns with every CPU online
/// and interrupts enabled on this one.
pub fn init(rsdp_address: Option<u64>) -> Result<(), SmpError> {
    use crate::arch::{acpi as firmware, ap_boot, tsc};

    apic::map_registers().map_err(SmpError::Apic)?;
    apic::enable_this_cpu();
    let bootstrap_apic_id = apic::id();
    cpu::cpu(0)
        .apic_id
        .store(bootstrap_apic_id, Ordering::Relaxed);
    tsc::calibrate();
    apic::calibrate_timer(|milliseconds| tsc::delay_us(milliseconds * 1000));
    set_interrupt_handler(ipi::CALL_VECTOR, on_call);
    set_interrupt_handler(apic::SPURIOUS_VECTOR, |_| {});
    crate::sched::init_bootstrap_cpu();
    cpu::mark_online(0);

    let rsdp_address = rsdp_address.ok_or(SmpError::NoRsdp)?;
    // SAFETY: the address is the RSDP the PVH start info reported.
    let processors = unsafe { firmware::processors(rsdp_address) }.map_err(SmpError::Acpi)?;
    CPUS_LISTED_BY_FIRMWARE.store(processors.len(), Ordering::Release);
    let others: Vec<u32> = processors
        .iter()
        .map(|processor| processor.apic_id)
        .filter(|&apic_id| apic_id != bootstrap_apic_id)
        .collect();
    if others.len() + 1 > MAX_CPUS {
        crate::println!(
            "qmk: note: the MADT lists {} CPUs; starting the first {MAX_CPUS}",
            others.len() + 1
        );
    }
    if !others.is_empty() {
        ap_boot::install_trampoline().map_err(SmpError::Trampoline)?;
        for (offset, &apic_id) in others.iter().take(MAX_CPUS - 1).enumerate() {
            let index = offset + 1;
            cpu::cpu(index).apic_id.store(apic_id, Ordering::Relaxed);
            ap_boot::start_ap(apic_id, index).map_err(SmpError::ApStart)?;
            // Online in index order: the next AP reuses the trampoline's
            // parameter block and must find `cpu_count` consistent.
            while cpu::cpu_count() <= index {
                core::hint::spin_loop();
            }
        }
    }
    crate::arch::interrupts::enable_interrupts();
    if !others.is_empty() {
        ap_boot::remove_trampoline();
    }
    Ok(())
}

/// The rest of an application processor's start-up, after its descriptor
/// tables: APIC, scheduler, then idle.
pub fn application_cpu_main(cpu_index: usize) -> ! {
    apic::enable_this_cpu();
    let apic_id = apic::id();
    let expected = cpu::cpu(cpu_index).apic_id();
    assert_eq!(
        apic_id, expected,
        "CPU {cpu_index} reports APIC id {apic_id}, but it was started as APIC id {expected}"
    );
    crate::sched::init_application_cpu(cpu_index)
}

/// Sends interrupt `vector` to CPU `cpu_index`.
pub fn send_ipi(cpu_index: usize, vector: u8) {
    let apic_id = cpu::cpu(cpu_index).apic_id();
    percpu_increment_u64!(core::mem::offset_of!(cpu::PerCpu, ipis_sent));
    ipi::send(apic_id, vector);
}

/// Sends interrupt `vector` to every online CPU but this one (one IPI each).
pub fn send_ipi_all_others(vector: u8) {
    let guard = PreemptGuard::new();
    let me = cpu::this_cpu(&guard).index();
    for index in (0..cpu::cpu_count()).filter(|&index| index != me) {
        send_ipi(index, vector);
    }
}

/// IPIs sent by all CPUs so far.
pub fn ipis_sent() -> u64 {
    cpu::online_cpus()
        .map(|cpu| cpu.ipis_sent.load(Ordering::Relaxed))
        .sum()
}

/// The cross-CPU call in progress: set by the caller (holding `CALL_LOCK`)
/// for the duration of one call; the pointee lives on the caller's stack
/// until every target has answered.
struct Call<'a> {
    function: &'a (dyn Fn() + Sync),
    pending: AtomicUsize,
}

static CALL_LOCK: SpinLock<()> = SpinLock::new(());
static CURRENT_CALL: AtomicPtr<Call<'static>> = AtomicPtr::new(core::ptr::null_mut());

fn on_call(_frame: &mut InterruptFrame) {
    let call = CURRENT_CALL.load(Ordering::Acquire);
    assert!(!call.is_null(), "a call IPI arrived with no call pending");
    // SAFETY: the caller published `call` before sending this IPI and keeps
    // it alive (and CURRENT_CALL set) until `pending` reaches zero, which
    // needs this handler's decrement below; so it is valid here.
    let call = unsafe { &*call };
    (call.function)();
    cpu::this_cpu_unguarded()
        .calls_handled
        .fetch_add(1, Ordering::Relaxed);
    call.pending.fetch_sub(1, Ordering::AcqRel);
    end_of_interrupt();
}

/// Runs `function` on every online CPU (here too, first) and returns when
/// all have run it. The others run it in interrupt context: it must not
/// block.
///
/// # Panics
///
/// If interrupts are disabled: a CPU waiting here with interrupts off
/// could never answer another CPU's call, and both would wait forever.
pub fn run_on_all_cpus(function: impl Fn() + Sync) {
    run_on_cpus(&function, true);
}

/// Runs `function` on every online CPU except this one, and waits.
pub fn run_on_other_cpus(function: impl Fn() + Sync) {
    run_on_cpus(&function, false);
}

fn run_on_cpus(function: &(dyn Fn() + Sync), including_this_one: bool) {
    assert!(
        interrupts_enabled(),
        "cross-CPU calls need interrupts enabled (a CPU waiting with interrupts off cannot answer another CPU's call)"
    );
    // Pinned: "every other CPU" must mean the same CPUs throughout.
    let _guard = PreemptGuard::new();
    let _call_lock = CALL_LOCK.lock();
    let others = cpu::cpu_count() - 1;
    let call = Call {
        function,
        pending: AtomicUsize::new(others),
    };
    let call_pointer: *const Call<'_> = &call;
    CURRENT_CALL.store(call_pointer.cast_mut().cast(), Ordering::Release);
    send_ipi_all_others(ipi::CALL_VECTOR);
    if including_this_one {
        function();
    }
    while call.pending.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    CURRENT_CALL.store(core::ptr::null_mut(), Ordering::Release);
}

/// Above this many pages a shootdown flushes whole TLBs instead.
const SHOOTDOWN_FULL_FLUSH_PAGES: u64 = 64;

/// Invalidates the kernel addresses `range` in every CPU's TLB (this one
/// included) and returns when all have done it: what changing a shared
/// kernel mapping costs without per-CPU windows.
///
/// # Panics
///
/// If interrupts are disabled (see [`run_on_all_cpus`]).
pub fn shootdown(range: Range<VirtAddr>) {
    run_on_all_cpus(|| invalidate_range_locally(&range));
}

/// Invalidates `range` in this CPU's TLB only.
pub fn invalidate_range_locally(range: &Range<VirtAddr>) {
    use crate::arch::paging::{invalidate_local, PAGE_SIZE};
    let start = range.start.align_down(PAGE_SIZE);
    let pages = (range.end.as_u64().saturating_sub(start.as_u64())).div_ceil(PAGE_SIZE);
    if pages > SHOOTDOWN_FULL_FLUSH_PAGES {
        crate::arch::paging::invalidate_all_local();
    } else {
        for page in 0..pages {
            invalidate_local(start + page * PAGE_SIZE);
        }
    }
}
