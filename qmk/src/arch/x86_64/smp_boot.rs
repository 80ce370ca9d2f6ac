//! SMP start-up on x86_64: the bootstrap CPU's local APIC and clock
//! calibration, the processors the ACPI MADT lists, and their start through
//! the INIT-SIPI trampoline (`ap_boot`). The arch-neutral part (the
//! scheduler, cross-CPU calls) is `crate::smp`'s.

use alloc::vec::Vec;

use super::{acpi, ap_boot, apic, tsc};
use crate::boot_info::BootInfo;
use crate::cpu::{self, MAX_CPUS};

/// Why SMP start-up failed.
#[derive(Debug)]
pub enum StartError {
    NoRsdp,
    Acpi(::acpi::AcpiError),
    Trampoline(super::paging::MapError),
    Apic(super::paging::MapError),
    ApStart(ap_boot::ApStartError),
}

impl core::fmt::Display for StartError {
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

/// This CPU's hardware id: its local APIC id.
pub fn this_cpu_hardware_id() -> u32 {
    apic::id()
}

/// The bootstrap CPU's interrupt controller and clocks: maps and enables
/// the local APIC, calibrates the TSC and the APIC timer against it, and
/// installs the spurious-interrupt handler. Returns this CPU's hardware id.
pub fn init_bootstrap_cpu() -> Result<u32, StartError> {
    apic::map_registers().map_err(StartError::Apic)?;
    apic::enable_this_cpu();
    tsc::calibrate();
    apic::calibrate_timer(|milliseconds| tsc::delay_us(milliseconds * 1000));
    super::interrupts::set_interrupt_handler(apic::SPURIOUS_VECTOR, |_| {});
    Ok(apic::id())
}

/// Starts every other enabled processor the MADT lists (at most
/// `MAX_CPUS - 1`), one at a time in index order: each gets its hardware id
/// in its `cpu::PerCpu` and enters `crate::smp::application_cpu_main`.
/// Returns how many processors the firmware lists, with every CPU online and
/// interrupts enabled on this one (removing the trampoline needs them: its
/// unmapping is a cross-CPU TLB shootdown).
pub fn start_other_cpus(
    boot_info: &BootInfo,
    bootstrap_hardware_id: u32,
) -> Result<usize, StartError> {
    let rsdp_address = boot_info.acpi_rsdp.ok_or(StartError::NoRsdp)?;
    // SAFETY: the address is the RSDP the PVH start info reported.
    let processors = unsafe { acpi::processors(rsdp_address) }.map_err(StartError::Acpi)?;
    let others: Vec<u32> = processors
        .iter()
        .map(|processor| processor.apic_id)
        .filter(|&apic_id| apic_id != bootstrap_hardware_id)
        .collect();
    if others.len() + 1 > MAX_CPUS {
        crate::println!(
            "qmk: note: the MADT lists {} CPUs; starting the first {MAX_CPUS}",
            others.len() + 1
        );
    }
    if !others.is_empty() {
        ap_boot::install_trampoline().map_err(StartError::Trampoline)?;
        for (offset, &apic_id) in others.iter().take(MAX_CPUS - 1).enumerate() {
            let index = offset + 1;
            cpu::set_hardware_id(index, apic_id);
            ap_boot::start_ap(apic_id, index).map_err(StartError::ApStart)?;
            // Online in index order: the next AP reuses the trampoline's
            // parameter block and must find `cpu_count` consistent.
            while cpu::cpu_count() <= index {
                core::hint::spin_loop();
            }
        }
    }
    super::interrupts::enable_interrupts();
    if !others.is_empty() {
        ap_boot::remove_trampoline();
    }
    Ok(processors.len())
}

/// An application processor's interrupt controller (after its descriptor
/// tables, before its scheduler). Returns its hardware id.
pub fn init_application_cpu() -> u32 {
    apic::enable_this_cpu();
    apic::id()
}
