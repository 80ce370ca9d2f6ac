//! The GICv3 interrupt controller, through the `arm-gic` crate: the
//! distributor and one redistributor per CPU (their addresses from the
//! device tree), the ICC_* CPU interface, SGIs for IPIs, and the table of
//! handlers by interrupt id.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicError, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};

use super::exceptions::InterruptFrame;

/// A handler for one interrupt id; runs with IRQs masked.
pub type InterruptHandler = fn(&mut InterruptFrame);

/// Interrupt ids with a handler slot: SGIs (0–15), PPIs (16–31), and the
/// first SPIs (none used yet).
const HANDLER_SLOTS: usize = 64;
static HANDLERS: [AtomicUsize; HANDLER_SLOTS] = [const { AtomicUsize::new(0) }; HANDLER_SLOTS];

/// The priority every enabled interrupt gets (all equal: handlers do not nest).
const PRIORITY: u8 = 0x80;

/// The driver; its distributor and redistributor accesses are serialised
/// by the lock. The CPU interface (acknowledge, end, SGIs) is per CPU and
/// used without it.
struct Gic(GicV3<'static>);

// SAFETY: the driver holds pointers to the GIC's MMIO registers, which are
// the same for every CPU (identity-mapped device memory); the mutex around
// it makes one CPU at a time use them.
unsafe impl Send for Gic {}

static GIC: spin::Mutex<Option<Gic>> = spin::Mutex::new(None);

/// Sets up the distributor and every redistributor, and this (bootstrap)
/// CPU's interface.
///
/// # Safety
///
/// 1. `distributor` and `redistributors` are the GICv3 register blocks the
///    device tree names, mapped as device memory at these addresses.
/// 2. Nothing else drives them; called once.
pub unsafe fn init(
    distributor: u64,
    redistributors: u64,
    cpu_count: usize,
) -> Result<(), GicError> {
    let distributor =
        NonNull::new(distributor as *mut Gicd).expect("the device tree gives a GIC distributor");
    let redistributors = NonNull::new(redistributors as *mut GicrSgi)
        .expect("the device tree gives GIC redistributors");
    // SAFETY: the distributor block is mapped as device memory and owned by
    // this driver alone (caller's contracts 1 and 2).
    let distributor = unsafe { UniqueMmioPointer::new(distributor) };
    // SAFETY: likewise for the redistributors, one frame pair per CPU.
    let mut gic = unsafe { GicV3::new(distributor, redistributors, cpu_count) }?;
    gic.setup(0);
    GicCpuInterface::set_priority_mask(0xff);
    *GIC.lock() = Some(Gic(gic));
    Ok(())
}

/// Wakes this CPU's redistributor and enables its CPU interface.
pub fn init_this_cpu(cpu_index: usize) {
    let mut gic = GIC.lock();
    let gic = gic
        .as_mut()
        .expect("gic::init runs on the bootstrap CPU first");
    gic.0.init_cpu(cpu_index);
    GicCpuInterface::enable_group1(true);
    GicCpuInterface::set_priority_mask(0xff);
}

/// Enables private interrupt `intid` (an SGI or PPI) on CPU `cpu_index`.
pub fn enable_private_interrupt(intid: u32, cpu_index: usize) -> Result<(), GicError> {
    let intid =
        IntId::try_from(intid).map_err(|_| GicError::InvalidGicCpuIntid(IntId::SPECIAL_NONE))?;
    let mut gic = GIC.lock();
    let gic = gic.as_mut().expect("gic::init ran");
    gic.0
        .set_interrupt_priority(intid, Some(cpu_index), PRIORITY)?;
    gic.0.enable_interrupt(intid, Some(cpu_index), true)
}

/// Installs `handler` for interrupt id `intid`.
///
/// # Panics
///
/// If `intid` has no handler slot (`HANDLER_SLOTS`).
pub fn set_interrupt_handler(intid: u32, handler: InterruptHandler) {
    let slot = HANDLERS.get(intid as usize).unwrap_or_else(|| {
        panic!("set_interrupt_handler: interrupt id {intid} has no slot (ids below {HANDLER_SLOTS} do)")
    });
    slot.store(handler as usize, Ordering::Release);
}

/// Sends SGI `sgi` (0–15) to the CPU whose MPIDR affinity is `mpidr`.
pub fn send_sgi(sgi: u32, mpidr: u64) -> Result<(), GicError> {
    let target = SgiTarget::List {
        affinity3: (mpidr >> 32) as u8,
        affinity2: (mpidr >> 16) as u8,
        affinity1: (mpidr >> 8) as u8,
        target_list: 1 << (mpidr & 0xf),
    };
    GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1)
}

/// The IRQ path: acknowledges the pending interrupt, re-arms the timer for
/// a tick, runs the handler, ends the interrupt (so handlers never do).
/// Called by the exception entry with IRQs masked. Returns the interrupt id,
/// or `None` for a spurious interrupt.
pub fn handle_irq(frame: &mut InterruptFrame) -> Option<u32> {
    // `None`: spurious, withdrawn before it was acknowledged.
    let intid = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)?;
    let id = u32::from(intid);
    if id == super::timer::TIMER_INTERRUPT_ID {
        super::timer::rearm_tick();
    }
    let handler = HANDLERS
        .get(id as usize)
        .map_or(0, |slot| slot.load(Ordering::Acquire));
    if handler == 0 {
        crate::test_harness::fail_run(|| {
            crate::console::emergency_print(format_args!(
                "qmk: EXCEPTION: interrupt {id} arrived but no handler is installed\n"
            ));
        });
    }
    // SAFETY: non-zero slots only ever hold an `InterruptHandler` stored by
    // `set_interrupt_handler`.
    let handler = unsafe { core::mem::transmute::<usize, InterruptHandler>(handler) };
    handler(frame);
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    Some(id)
}
