//! CPU discovery: the local APIC ids of the machine's processors, from the
//! ACPI MADT (through the `acpi` crate), starting at the RSDP whose address
//! the PVH start info gave.
//!
//! ACPI tables usually lie near the top of low RAM, above the direct map, so
//! the handler maps the pages it is asked for into the firmware part of the
//! device region. The mappings are made at boot, a few pages, and kept (the
//! unmap callback does nothing): simpler than unmapping, and the region is
//! otherwise unused.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use ::acpi::madt::{Madt, MadtEntry};
use ::acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use ::x86_64::structures::paging::PageTableFlags;
use ::x86_64::{PhysAddr, VirtAddr};

use super::paging::{self, PAGE_SIZE};

/// Firmware mappings start one page into the device region (the APIC
/// registers take the first page).
const FIRMWARE_MAPPINGS_START: u64 = paging::DEVICE_REGION.start + 16 * PAGE_SIZE;
static NEXT_FIRMWARE_MAPPING: AtomicU64 = AtomicU64::new(FIRMWARE_MAPPINGS_START);

#[derive(Clone, Copy)]
struct FirmwareMapper;

impl AcpiHandler for FirmwareMapper {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let physical = physical_address as u64;
        let first_page = physical & !(PAGE_SIZE - 1);
        let end = physical + size as u64;
        let mapped_length = end.next_multiple_of(PAGE_SIZE) - first_page;
        let virtual_start = match paging::direct_map_address(PhysAddr::new(physical)) {
            Some(address) if end <= paging::direct_map_end().as_u64() => address,
            _ => {
                let base = NEXT_FIRMWARE_MAPPING.fetch_add(mapped_length, Ordering::Relaxed);
                assert!(
                    base + mapped_length <= paging::DEVICE_REGION.end,
                    "the device region has no room for {mapped_length} more bytes of ACPI tables"
                );
                for offset in (0..mapped_length).step_by(PAGE_SIZE as usize) {
                    let frame =
                        super::PhysFrame::containing_address(PhysAddr::new(first_page + offset));
                    paging::map_page(
                        VirtAddr::new(base + offset),
                        frame,
                        PageTableFlags::NO_EXECUTE | PageTableFlags::GLOBAL,
                    )
                    .unwrap_or_else(|error| {
                        panic!(
                            "mapping ACPI table page {:#x}: {error}",
                            first_page + offset
                        )
                    });
                }
                VirtAddr::new(base + (physical - first_page))
            }
        };
        let pointer =
            NonNull::new(virtual_start.as_mut_ptr::<T>()).expect("a mapped address is never null");
        // SAFETY: `pointer` maps `size` bytes at `physical_address`
        // (through the direct map or the pages just mapped), readable for
        // the rest of the run; `mapped_length` covers them.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                pointer,
                size,
                mapped_length as usize,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // Kept mapped: see the module documentation.
    }
}

/// A processor the firmware lists as usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processor {
    pub apic_id: u32,
}

/// The usable processors of the MADT, in table order.
///
/// # Safety
///
/// `rsdp_address` is the physical address of the ACPI RSDP the firmware
/// (the PVH start info) reported, and the tables are not modified.
pub unsafe fn processors(rsdp_address: u64) -> Result<Vec<Processor>, ::acpi::AcpiError> {
    // SAFETY: the caller vouches for the RSDP address; the handler maps
    // what the crate asks for.
    let tables = unsafe { AcpiTables::from_rsdp(FirmwareMapper, rsdp_address as usize)? };
    let madt = tables.find_table::<Madt>()?;
    let mut processors = Vec::new();
    // Flags bit 0: enabled; bit 1: online capable (may be enabled later).
    // Only enabled processors are started.
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(local) if local.flags & 1 != 0 => processors.push(Processor {
                apic_id: u32::from(local.apic_id),
            }),
            MadtEntry::LocalX2Apic(local) if local.flags & 1 != 0 => processors.push(Processor {
                apic_id: local.x2apic_id,
            }),
            _ => {}
        }
    }
    Ok(processors)
}
