//! What the boot loader told us, copied into kernel memory.
//!
//! The arch boot code fills a [`BootInfo`] from the loader's own structures
//! (PVH start info on x86_64) before the kernel replaces the boot page tables,
//! after which the loader's memory is no longer mapped. The rest of the kernel
//! sees only this arch-neutral form.

use core::fmt;

/// At most this many memory-map entries are kept; QEMU reports fewer than ten.
pub const MAX_MEMORY_REGIONS: usize = 64;
/// Longest kernel command line kept; a longer one is an error, not truncated.
pub const MAX_COMMAND_LINE: usize = 1024;

/// What a physical memory region may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM the kernel may allocate.
    Usable,
    /// Anything else (firmware, ACPI tables, device memory, holes).
    Reserved,
}

/// One physical memory range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub end: u64,
    pub kind: MemoryKind,
}

/// Boot facts, owned by the kernel.
pub struct BootInfo {
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    region_count: usize,
    command_line: [u8; MAX_COMMAND_LINE],
    command_line_length: usize,
    /// Physical address of the ACPI RSDP, if the loader gave one (SMP start-up needs it).
    pub acpi_rsdp: Option<u64>,
}

/// Why the loader's information could not be taken over.
#[derive(Debug)]
pub enum BootInfoError {
    TooManyMemoryRegions { count: usize },
    CommandLineTooLong { length: usize },
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::TooManyMemoryRegions { count } => write!(
                formatter,
                "the loader's memory map has {count} entries, more than the {MAX_MEMORY_REGIONS} kept"
            ),
            Self::CommandLineTooLong { length } => write!(
                formatter,
                "the kernel command line is {length} bytes, longer than the {MAX_COMMAND_LINE} kept"
            ),
        }
    }
}

impl BootInfo {
    /// An empty boot info, filled by the arch boot code.
    pub const fn empty() -> Self {
        Self {
            regions: [MemoryRegion {
                start: 0,
                end: 0,
                kind: MemoryKind::Reserved,
            }; MAX_MEMORY_REGIONS],
            region_count: 0,
            command_line: [0; MAX_COMMAND_LINE],
            command_line_length: 0,
            acpi_rsdp: None,
        }
    }

    /// Appends a memory region (empty ones are ignored).
    pub fn push_memory_region(&mut self, region: MemoryRegion) -> Result<(), BootInfoError> {
        if region.end <= region.start {
            return Ok(());
        }
        let slot =
            self.regions
                .get_mut(self.region_count)
                .ok_or(BootInfoError::TooManyMemoryRegions {
                    count: self.region_count + 1,
                })?;
        *slot = region;
        self.region_count += 1;
        Ok(())
    }

    /// Stores the command line (bytes that are not ASCII are replaced by `?`).
    pub fn set_command_line(&mut self, bytes: &[u8]) -> Result<(), BootInfoError> {
        if bytes.len() > MAX_COMMAND_LINE {
            return Err(BootInfoError::CommandLineTooLong {
                length: bytes.len(),
            });
        }
        for (slot, &byte) in self.command_line.iter_mut().zip(bytes) {
            *slot = if byte.is_ascii() { byte } else { b'?' };
        }
        self.command_line_length = bytes.len();
        Ok(())
    }

    /// The memory map, in the loader's order.
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The kernel command line (`-append` under QEMU).
    pub fn command_line(&self) -> &str {
        // Every byte is ASCII (see `set_command_line`), so this cannot fail.
        core::str::from_utf8(&self.command_line[..self.command_line_length]).unwrap_or("")
    }
}
