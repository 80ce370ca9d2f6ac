//! Starting the other CPUs: PSCI `CPU_ON` (through `smccc`, over the
//! conduit the device tree names) for every CPU the device tree lists.
//!
//! Each CPU gets a start block — its boot stack, its exception stack and its
//! dense index — whose address is the PSCI context id: the started CPU finds
//! it in x0 at `qmk_secondary_entry` (see `boot`), with its MMU off. CPUs are
//! started one at a time, in device-tree order, so indices are dense and
//! each CPU is online before the next is started.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, MPIDR_EL1};
use smccc::psci;
use smccc::{Hvc, Smc};

use super::firmware::{MachineDescription, PsciConduit};
use super::stacks::EXCEPTION_STACK_SIZE;

/// CPUs started at most (static boot and exception stacks).
/// TODO(issue 13): stacks from the kernel's stack allocator, up to `cpu::MAX_CPUS`.
pub const MAX_STARTED_CPUS: usize = 8;
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

static SECONDARY_STACKS: [Stack<SECONDARY_STACK_SIZE>; MAX_STARTED_CPUS] =
    [const { Stack::new() }; MAX_STARTED_CPUS];
static EXCEPTION_STACKS: [Stack<EXCEPTION_STACK_SIZE>; MAX_STARTED_CPUS] =
    [const { Stack::new() }; MAX_STARTED_CPUS];

/// What `qmk_secondary_entry` reads (layout fixed by the assembly).
#[repr(C)]
struct StartBlock {
    stack_top: AtomicU64,
    exception_stack_top: AtomicU64,
    cpu_index: AtomicU64,
}

static START_BLOCKS: [StartBlock; MAX_STARTED_CPUS] = [const {
    StartBlock {
        stack_top: AtomicU64::new(0),
        exception_stack_top: AtomicU64::new(0),
        cpu_index: AtomicU64::new(0),
    }
}; MAX_STARTED_CPUS];

/// This CPU's MPIDR affinity.
pub fn this_mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
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

/// Starts every other CPU of `machine` one at a time, in device-tree order:
/// `before_start(index, mpidr)` runs before CPU `index` is started, and the
/// next CPU is started once `is_online(index)`.
fn start_cpus_in_order(
    machine: &MachineDescription,
    before_start: impl Fn(usize, u64),
    is_online: impl Fn(usize) -> bool,
) -> Result<(), CpuStartError> {
    extern "C" {
        fn qmk_secondary_entry();
    }
    let own = this_mpidr();
    let others = machine.cpu_mpidrs[..machine.cpu_count]
        .iter()
        .copied()
        .filter(|&mpidr| mpidr != own);
    for (offset, mpidr) in others.take(MAX_STARTED_CPUS - 1).enumerate() {
        let index = offset + 1;
        before_start(index, mpidr);
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
        while !is_online(index) {
            if super::timer::read() > deadline {
                return Err(CpuStartError::NeverCameOnline { mpidr, index });
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

// The kernel core's SMP start-up (`crate::smp`): the same CPU_ON sequence,
// with the core's per-CPU blocks, scheduler and "online" count.

/// Why SMP start-up failed.
#[derive(Debug)]
pub enum StartError {
    Gic(arm_gic::gicv3::GicError),
    CpuStart(CpuStartError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Gic(error) => write!(formatter, "setting up the GICv3: {error}"),
            Self::CpuStart(error) => write!(formatter, "{error}"),
        }
    }
}

/// The hardware id of the CPU with MPIDR affinity `mpidr`: Aff2, Aff1,
/// Aff0 in bits 23:0 (what `ipi::send` addresses).
///
/// # Panics
///
/// If Aff3 is not 0 (QEMU `virt` never sets it; the id has 32 bits).
pub fn hardware_id_of(mpidr: u64) -> u32 {
    assert!(
        mpidr >> 32 == 0,
        "MPIDR affinity {mpidr:#x} has a non-zero Aff3, which a 32-bit hardware id cannot hold"
    );
    mpidr as u32
}

/// This CPU's hardware id (see [`hardware_id_of`]).
pub fn this_cpu_hardware_id() -> u32 {
    hardware_id_of(this_mpidr())
}

/// Enables, on CPU `cpu_index`, the interrupts the kernel takes: the tick's
/// PPI and the IPIs' SGIs.
fn enable_kernel_interrupts(cpu_index: usize) -> Result<(), StartError> {
    let vectors = [super::timer::TIMER_VECTOR]
        .into_iter()
        .chain(super::ipi::KERNEL_SGIS);
    for vector in vectors {
        super::gic::enable_private_interrupt(u32::from(vector), cpu_index)
            .map_err(StartError::Gic)?;
    }
    Ok(())
}

/// The bootstrap CPU's interrupt controller: the GICv3 (distributor,
/// redistributors, this CPU's interface) and this CPU's kernel interrupts.
/// The generic timer needs no calibration. Returns this CPU's hardware id.
pub fn init_bootstrap_cpu() -> Result<u32, StartError> {
    let machine = super::firmware::machine();
    // SAFETY: the device tree names these GICv3 blocks; `paging` maps them
    // identity as device memory; nothing else drives the GIC; once.
    unsafe {
        super::gic::init(
            machine.gic_distributor,
            machine.gic_redistributors,
            machine.cpu_count,
        )
    }
    .map_err(StartError::Gic)?;
    enable_kernel_interrupts(0)?;
    Ok(this_cpu_hardware_id())
}

/// Starts every other CPU the device tree lists (at most
/// [`MAX_STARTED_CPUS`] in all), one at a time in index order: each gets
/// its hardware id in its `cpu::PerCpu` and enters
/// `crate::smp::application_cpu_main`. Returns how many CPUs the device tree
/// lists, with every CPU online and IRQs unmasked on this one.
pub fn start_other_cpus(
    _boot_info: &crate::boot_info::BootInfo,
    _bootstrap_hardware_id: u32,
) -> Result<usize, StartError> {
    let machine = super::firmware::machine();
    if machine.cpu_count > MAX_STARTED_CPUS {
        crate::println!(
            "qmk: note: the device tree lists {} CPUs; starting the first {MAX_STARTED_CPUS}",
            machine.cpu_count
        );
    }
    start_cpus_in_order(
        machine,
        |index, mpidr| crate::cpu::set_hardware_id(index, hardware_id_of(mpidr)),
        |index| crate::cpu::cpu_count() > index,
    )
    .map_err(StartError::CpuStart)?;
    super::interrupts::enable_interrupts();
    Ok(machine.cpu_count)
}

/// An application CPU's interrupt controller: its redistributor and CPU
/// interface, and its kernel interrupts. Returns its hardware id.
///
/// # Panics
///
/// If the GIC refuses to enable the kernel's interrupts (it accepted them
/// on the bootstrap CPU).
pub fn init_application_cpu() -> u32 {
    let cpu_index = crate::cpu::current_cpu_index();
    super::gic::init_this_cpu(cpu_index);
    if let Err(error) = enable_kernel_interrupts(cpu_index) {
        panic!("enabling the tick and IPIs on CPU {cpu_index}: {error}");
    }
    this_cpu_hardware_id()
}

/// The first Rust code on a CPU started by PSCI (see `boot`): on its boot
/// stack, MMU off, exceptions masked.
#[no_mangle]
extern "C" fn qmk_aarch64_secondary_cpu_entry(cpu_index: u64) -> ! {
    let cpu_index = cpu_index as usize;
    // SAFETY: `start_cpus_in_order` gives each started CPU its own dense
    // index; nothing has read per-CPU data on this CPU yet.
    unsafe { crate::cpu::install_this_cpu(cpu_index) };
    super::exceptions::install_on_this_cpu();
    super::paging::enable_on_this_cpu();
    crate::smp::application_cpu_main(cpu_index)
}
