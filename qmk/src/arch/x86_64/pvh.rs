//! Reading the PVH start info (Xen's `hvm_start_info`, version 1) that
//! QEMU's PVH loader passes to the kernel.
//!
//! The structures are read through the boot page tables' direct-map alias of
//! the first GiB and copied into a [`BootInfo`]; the kernel's own page tables
//! do not map the loader's memory.

use core::fmt;

use crate::boot_info::{BootInfo, BootInfoError, MemoryKind, MemoryRegion};

/// `hvm_start_info.magic`: "xEn3" with the high bit of the first byte set.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// E820 type of usable RAM in the PVH memory map.
const MEMORY_TYPE_RAM: u32 = 1;
/// The boot page tables map physical memory below this at the direct-map base.
const BOOT_MAPPED_LIMIT: u64 = 1 << 30;

#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    module_count: u32,
    module_list_paddr: u64,
    command_line_paddr: u64,
    rsdp_paddr: u64,
    memory_map_paddr: u64,
    memory_map_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemoryMapEntry {
    address: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Why the start info could not be used.
#[derive(Debug)]
pub enum StartInfoError {
    BadMagic(u32),
    /// Version 0 has no memory map, and the kernel needs one.
    NoMemoryMap {
        version: u32,
    },
    OutsideBootMapping {
        what: &'static str,
        address: u64,
    },
    BootInfo(BootInfoError),
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::BadMagic(magic) => write!(
                formatter,
                "magic is {magic:#x}, not {START_INFO_MAGIC:#x}: not booted through PVH"
            ),
            Self::NoMemoryMap { version } => write!(
                formatter,
                "start info version {version} carries no memory map (version 1 or later needed)"
            ),
            Self::OutsideBootMapping { what, address } => write!(
                formatter,
                "the {what} at {address:#x} lies above the first GiB, which is all the boot page tables map"
            ),
            Self::BootInfo(error) => write!(formatter, "{error}"),
        }
    }
}

impl From<BootInfoError> for StartInfoError {
    fn from(error: BootInfoError) -> Self {
        Self::BootInfo(error)
    }
}

/// A pointer to `length` bytes at physical address `paddr`, checked to lie
/// within the boot mapping.
fn boot_mapped<T>(
    what: &'static str,
    paddr: u64,
    count: usize,
) -> Result<*const T, StartInfoError> {
    let length = (core::mem::size_of::<T>() * count) as u64;
    let end = paddr.checked_add(length);
    if end.is_none_or(|end| end > BOOT_MAPPED_LIMIT) {
        return Err(StartInfoError::OutsideBootMapping {
            what,
            address: paddr,
        });
    }
    Ok((super::paging::DIRECT_MAP_BASE + paddr).as_ptr())
}

/// Copies the memory map, command line and RSDP address into `boot_info`.
///
/// # Safety
///
/// 1. `start_info_paddr` is the physical address QEMU's PVH loader passed.
/// 2. The boot page tables are active (they map the first GiB at the
///    direct-map base), and the loader's structures are not modified meanwhile.
pub unsafe fn read_start_info(
    start_info_paddr: u32,
    boot_info: &mut BootInfo,
) -> Result<(), StartInfoError> {
    let start_info: *const StartInfo = boot_mapped("start info", start_info_paddr.into(), 1)?;
    // SAFETY: the loader placed a start info there (caller's contract 1) and
    // it is mapped (checked by `boot_mapped`, contract 2). `read_unaligned`
    // because nothing guarantees the loader aligned it.
    let start_info = unsafe { start_info.read_unaligned() };
    if start_info.magic != START_INFO_MAGIC {
        return Err(StartInfoError::BadMagic(start_info.magic));
    }
    if start_info.version < 1 || start_info.memory_map_paddr == 0 {
        return Err(StartInfoError::NoMemoryMap {
            version: start_info.version,
        });
    }

    let entry_count = start_info.memory_map_entries as usize;
    let entries: *const MemoryMapEntry =
        boot_mapped("memory map", start_info.memory_map_paddr, entry_count)?;
    for index in 0..entry_count {
        // SAFETY: `index < entry_count`, and the whole table is mapped
        // (checked above) and written by the loader.
        let entry = unsafe { entries.add(index).read_unaligned() };
        boot_info.push_memory_region(MemoryRegion {
            start: entry.address,
            end: entry.address.saturating_add(entry.size),
            kind: if entry.kind == MEMORY_TYPE_RAM {
                MemoryKind::Usable
            } else {
                MemoryKind::Reserved
            },
        })?;
    }

    if start_info.command_line_paddr != 0 {
        let mut length = 0;
        loop {
            let byte: *const u8 =
                boot_mapped("command line", start_info.command_line_paddr + length, 1)?;
            // SAFETY: the byte is mapped (checked) and belongs to the loader's
            // NUL-terminated command line, which we stop reading at its NUL.
            if unsafe { byte.read() } == 0 {
                break;
            }
            length += 1;
        }
        let start: *const u8 = boot_mapped(
            "command line",
            start_info.command_line_paddr,
            length as usize,
        )?;
        // SAFETY: the `length` bytes before the NUL were just read one by one
        // and are mapped; nothing writes them while we copy.
        let command_line = unsafe { core::slice::from_raw_parts(start, length as usize) };
        boot_info.set_command_line(command_line)?;
    }

    boot_info.acpi_rsdp = (start_info.rsdp_paddr != 0).then_some(start_info.rsdp_paddr);
    Ok(())
}
