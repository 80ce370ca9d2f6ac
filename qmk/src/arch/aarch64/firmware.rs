//! The machine description: QEMU's flattened device tree, read with the
//! `fdt` crate and copied into kernel memory.
//!
//! Where the tree is: a loader that boots a Linux `Image` passes its address
//! in x0; for an ELF, QEMU (7.2, `hw/arm/boot.c`) leaves x0 zero and puts the
//! tree at the start of RAM — verified here, and why the linker script
//! starts the kernel 512 KiB above. Both are tried, x0 first, and a tree is
//! only taken when its header's magic is right.

use core::fmt;

use crate::boot_info::{BootInfo, BootInfoError, MemoryKind, MemoryRegion};

/// QEMU `virt`'s RAM base, where an ELF kernel finds the device tree.
const RAM_BASE: u64 = 0x4000_0000;
/// The first word of every flattened device tree (big-endian).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// The most CPUs read from the tree.
pub const MAX_FIRMWARE_CPUS: usize = 64;

/// How PSCI calls reach the firmware (QEMU itself, for `virt`): `hvc` when
/// the kernel was entered at EL1, `smc` with `virtualization=on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    Hvc,
    Smc,
}

/// What the kernel needs from the device tree.
#[derive(Clone, Debug)]
pub struct MachineDescription {
    /// Where the tree itself lies (kept out of the frame allocator).
    pub device_tree: core::ops::Range<u64>,
    /// MPIDR affinity values of the CPUs, in the tree's order.
    pub cpu_mpidrs: [u64; MAX_FIRMWARE_CPUS],
    pub cpu_count: usize,
    pub psci_conduit: PsciConduit,
    /// GICv3 distributor and redistributor register blocks.
    pub gic_distributor: u64,
    pub gic_redistributors: u64,
}

/// The machine as the device tree described it at boot.
static MACHINE: spin::Once<MachineDescription> = spin::Once::new();

/// Keeps `machine` for [`machine`]; the boot code calls it once.
pub fn record_machine(machine: MachineDescription) -> &'static MachineDescription {
    MACHINE.call_once(|| machine)
}

/// The machine the device tree describes.
///
/// # Panics
///
/// Before the boot code recorded it ([`record_machine`]).
pub fn machine() -> &'static MachineDescription {
    MACHINE
        .get()
        .expect("firmware::machine: the boot code records the device tree's description first")
}

/// Why the device tree could not be used.
#[derive(Debug)]
pub enum FirmwareError {
    NoDeviceTree { x0: u64 },
    Parse(fdt::FdtError),
    NoPsci,
    UnknownPsciMethod,
    NoGicV3,
    BootInfo(BootInfoError),
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::NoDeviceTree { x0 } => write!(
                formatter,
                "no device tree: neither x0 ({x0:#x}) nor the start of RAM ({RAM_BASE:#x}) holds the magic {FDT_MAGIC:#x}"
            ),
            Self::Parse(error) => write!(formatter, "the device tree is malformed: {error:?}"),
            Self::NoPsci => write!(formatter, "the device tree has no /psci node (SMP and power-off need PSCI)"),
            Self::UnknownPsciMethod => write!(formatter, "/psci's method is neither \"hvc\" nor \"smc\""),
            Self::NoGicV3 => write!(formatter, "the device tree has no GICv3 (\"arm,gic-v3\"; start QEMU with -M virt,gic-version=3)"),
            Self::BootInfo(error) => write!(formatter, "{error}"),
        }
    }
}

/// True when `address` starts with the device-tree magic.
///
/// # Safety
///
/// `address`, if non-zero, is readable memory (RAM) for 4 bytes.
unsafe fn holds_device_tree(address: u64) -> bool {
    if address == 0 || !address.is_multiple_of(8) {
        return false;
    }
    // SAFETY: readable RAM (caller's contract), aligned.
    let word = unsafe { core::ptr::read_volatile(address as *const u32) };
    u32::from_be(word) == FDT_MAGIC
}

/// Reads the device tree into `boot_info` (memory map, command line) and
/// returns the rest of what the kernel needs.
///
/// # Safety
///
/// 1. `x0` is the value QEMU left in x0 at entry.
/// 2. The MMU is off or maps RAM identity: the tree is read in place.
pub unsafe fn read_device_tree(
    x0: u64,
    boot_info: &mut BootInfo,
) -> Result<MachineDescription, FirmwareError> {
    // SAFETY: x0 is either zero, the tree QEMU passed, or (never, with QEMU)
    // something else in RAM; RAM_BASE is RAM. Both readable (contract 2).
    let address = if unsafe { holds_device_tree(x0) } {
        x0
    } else if unsafe { holds_device_tree(RAM_BASE) } {
        RAM_BASE
    } else {
        return Err(FirmwareError::NoDeviceTree { x0 });
    };
    // SAFETY: a valid header lies at `address` (magic checked), the tree is
    // never written, and it stays mapped while parsed (contract 2).
    let tree = unsafe { fdt::Fdt::from_ptr(address as *const u8) }.map_err(FirmwareError::Parse)?;

    for region in tree.memory().regions() {
        let start = region.starting_address as u64;
        let end = start + region.size.unwrap_or(0) as u64;
        boot_info
            .push_memory_region(MemoryRegion {
                start,
                end,
                kind: MemoryKind::Usable,
            })
            .map_err(FirmwareError::BootInfo)?;
    }
    boot_info
        .set_command_line(tree.chosen().bootargs().unwrap_or("").as_bytes())
        .map_err(FirmwareError::BootInfo)?;

    let mut description = MachineDescription {
        device_tree: address..address + tree.total_size() as u64,
        cpu_mpidrs: [0; MAX_FIRMWARE_CPUS],
        cpu_count: 0,
        psci_conduit: PsciConduit::Hvc,
        gic_distributor: 0,
        gic_redistributors: 0,
    };
    for cpu in tree.cpus().take(MAX_FIRMWARE_CPUS) {
        description.cpu_mpidrs[description.cpu_count] = cpu.ids().first() as u64;
        description.cpu_count += 1;
    }
    let method = tree
        .find_node("/psci")
        .ok_or(FirmwareError::NoPsci)?
        .property("method")
        .and_then(|property| property.as_str());
    description.psci_conduit = match method {
        Some("hvc") => PsciConduit::Hvc,
        Some("smc") => PsciConduit::Smc,
        _ => return Err(FirmwareError::UnknownPsciMethod),
    };
    let gic = tree
        .find_compatible(&["arm,gic-v3"])
        .ok_or(FirmwareError::NoGicV3)?;
    let mut registers = gic.reg().ok_or(FirmwareError::NoGicV3)?;
    description.gic_distributor = registers
        .next()
        .ok_or(FirmwareError::NoGicV3)?
        .starting_address as u64;
    description.gic_redistributors = registers
        .next()
        .ok_or(FirmwareError::NoGicV3)?
        .starting_address as u64;
    Ok(description)
}
