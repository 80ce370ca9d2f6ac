//! Starting the other CPUs: PSCI `CPU_ON` (through `smccc`, over the
//! conduit the device tree names) for every CPU the device tree lists.
//!
//! Each CPU gets a start block — its boot stack, its exception stack and its
//! dense index — whose address is the PSCI context id: the started CPU finds
//! it in x0 at `qmk_secondary_entry` (see `boot`), with its MMU off. CPUs are
//! started one at a time, in device-tree order, so indices are dense and
//! each CPU is online before the next is started.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, MPIDR_EL1};
use smccc::psci;
use smccc::{Hvc, Smc};

use super::firmware::{MachineDescription, PsciConduit};
use super::stacks::EXCEPTION_STACK_SIZE;

/// CPUs the bring-up starts at most (static stacks).
/// TODO(issue 13): stacks from the kernel's stack allocator, up to `cpu::MAX_CPUS`.
pub const MAX_BRINGUP_CPUS: usize = 8;
/// A started CPU's boot stack (it becomes its idle context).
const SECONDARY_STACK_SIZE: usize = 64 * 1024;

/// MPIDR bits that identify a CPU (Aff3, Aff2, Aff1, Aff0).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

#[repr(C, align(16))]
struct Stack<const SIZE: usize>(UnsafeCell<[u8; SIZE]>);

// SAFETY: each stack is used by exactly one CPU (its index's), and Rust
// never forms references to its bytes: only its top address is taken.
unsafe impl<const SIZE: usize> Sync for Stack<SIZE> {}

impl<const SIZE: usize> Stack<SIZE> {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; SIZE]))
    }

    fn top(&self) -> u64 {
        self.0.get() as u64 + SIZE as u64
    }
}

static SECONDARY_STACKS: [Stack<SECONDARY_STACK_SIZE>; MAX_BRINGUP_CPUS] =
    [const { Stack::new() }; MAX_BRINGUP_CPUS];
static EXCEPTION_STACKS: [Stack<EXCEPTION_STACK_SIZE>; MAX_BRINGUP_CPUS] =
    [const { Stack::new() }; MAX_BRINGUP_CPUS];

/// What `qmk_secondary_entry` reads (layout fixed by the assembly).
#[repr(C)]
struct StartBlock {
    stack_top: AtomicU64,
    exception_stack_top: AtomicU64,
    cpu_index: AtomicU64,
}

static START_BLOCKS: [StartBlock; MAX_BRINGUP_CPUS] = [const {
    StartBlock {
        stack_top: AtomicU64::new(0),
        exception_stack_top: AtomicU64::new(0),
        cpu_index: AtomicU64::new(0),
    }
}; MAX_BRINGUP_CPUS];

/// CPUs that finished their start-up (the bootstrap CPU counts from the start).
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(1);
/// MPIDR affinity of each CPU, by dense index.
static CPU_MPIDRS: [AtomicU64; MAX_BRINGUP_CPUS] = [const { AtomicU64::new(0) }; MAX_BRINGUP_CPUS];

/// How many CPUs are online.
pub fn cpus_online() -> usize {
    CPUS_ONLINE.load(Ordering::Acquire)
}

/// The MPIDR affinity of CPU `index`.
pub fn mpidr_of(index: usize) -> u64 {
    CPU_MPIDRS[index].load(Ordering::Relaxed)
}

/// This CPU's MPIDR affinity.
pub fn this_mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// Called by a started CPU once it is fully up.
pub fn mark_this_cpu_online() {
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Why a CPU did not start.
#[derive(Debug)]
pub enum CpuStartError {
    Psci {
        mpidr: u64,
        error: psci::error::Error,
    },
    NeverCameOnline {
        mpidr: u64,
        index: usize,
    },
}

impl core::fmt::Display for CpuStartError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Psci { mpidr, error } => {
                write!(
                    formatter,
                    "PSCI CPU_ON for MPIDR {mpidr:#x} failed: {error:?}"
                )
            }
            Self::NeverCameOnline { mpidr, index } => write!(
                formatter,
                "CPU {index} (MPIDR {mpidr:#x}) was started but did not come online within a second"
            ),
        }
    }
}

/// Starts every other CPU the device tree lists (at most
/// [`MAX_BRINGUP_CPUS`] in all) and returns once each is online.
pub fn start_other_cpus(machine: &MachineDescription) -> Result<(), CpuStartError> {
    extern "C" {
        fn qmk_secondary_entry();
    }
    let own = this_mpidr();
    CPU_MPIDRS[0].store(own, Ordering::Relaxed);
    let others = machine.cpu_mpidrs[..machine.cpu_count]
        .iter()
        .copied()
        .filter(|&mpidr| mpidr != own);
    for (offset, mpidr) in others.take(MAX_BRINGUP_CPUS - 1).enumerate() {
        let index = offset + 1;
        CPU_MPIDRS[index].store(mpidr, Ordering::Relaxed);
        let block = &START_BLOCKS[index];
        block
            .stack_top
            .store(SECONDARY_STACKS[index].top(), Ordering::Relaxed);
        block
            .exception_stack_top
            .store(EXCEPTION_STACKS[index].top(), Ordering::Relaxed);
        block.cpu_index.store(index as u64, Ordering::Relaxed);
        let block_address = block as *const StartBlock as u64;
        // The started CPU reads its block with the MMU (and so its data
        // cache) off: clean the block to the point of coherency first.
        // SAFETY: cache maintenance of memory we own changes no contents.
        unsafe {
            core::arch::asm!("dc cvac, {0}", "dsb sy", in(reg) block_address, options(nostack))
        };
        // Identity-mapped kernel: these virtual addresses are physical.
        let entry = qmk_secondary_entry as *const () as u64;
        let result = match machine.psci_conduit {
            PsciConduit::Hvc => psci::cpu_on::<Hvc>(mpidr, entry, block_address),
            PsciConduit::Smc => psci::cpu_on::<Smc>(mpidr, entry, block_address),
        };
        result.map_err(|error| CpuStartError::Psci { mpidr, error })?;
        let deadline = super::timer::read() + super::timer::hz();
        while cpus_online() <= index {
            if super::timer::read() > deadline {
                return Err(CpuStartError::NeverCameOnline { mpidr, index });
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}
