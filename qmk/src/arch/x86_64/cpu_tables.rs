//! Per-CPU descriptor tables: GDT and TSS (with its interrupt stack table).
//!
//! Each CPU needs its own TSS (the IST stack pointers are per CPU) and so its
//! own GDT (the TSS descriptor lives there, and `ltr` marks it busy). The
//! functions here build and load one CPU's tables from any `'static` storage:
//! the bootstrap CPU's live in statics, other CPUs' can be leaked boxes.

use ::x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use ::x86_64::instructions::tables::load_tss;
use ::x86_64::registers::segmentation::SegmentSelector;
use ::x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use ::x86_64::structures::tss::TaskStateSegment;
use ::x86_64::VirtAddr;
use spin::Once;

use super::stacks;

/// The interrupt stacks every CPU has. Every interrupt vector runs on one of
/// them (never on the interrupted stack): prebuilt `core` code may use the
/// red zone below its stack pointer, which a push onto that stack would
/// destroy. NMI, double fault and machine check get their own stacks because
/// they can arrive while another handler is running on its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IstSlot {
    Nmi = 0,
    DoubleFault = 1,
    MachineCheck = 2,
    /// Page faults get their own stack so that a fault inside another
    /// exception's handler does not overwrite that handler's frame.
    PageFault = 3,
    OtherException = 4,
    /// External interrupts and IPIs (vectors 32–255).
    ExternalInterrupt = 5,
}

/// How many IST slots are used (the hardware has seven).
pub const IST_SLOT_COUNT: usize = 6;

impl IstSlot {
    /// Every slot, in TSS order.
    pub const ALL: [IstSlot; IST_SLOT_COUNT] = [
        IstSlot::Nmi,
        IstSlot::DoubleFault,
        IstSlot::MachineCheck,
        IstSlot::PageFault,
        IstSlot::OtherException,
        IstSlot::ExternalInterrupt,
    ];

    /// The value for an IDT gate's IST field (1-based; 0 means "no IST").
    pub fn gate_ist_index(self) -> u8 {
        self as u8 + 1
    }

    /// The IST slot that serves `vector`.
    pub fn for_vector(vector: u8) -> IstSlot {
        match vector {
            2 => IstSlot::Nmi,
            8 => IstSlot::DoubleFault,
            18 => IstSlot::MachineCheck,
            14 => IstSlot::PageFault,
            0..=31 => IstSlot::OtherException,
            _ => IstSlot::ExternalInterrupt,
        }
    }
}

/// The segment selectors of one CPU's GDT.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub task_state: SegmentSelector,
}

/// A TSS whose interrupt stack table points at `ist_stack_tops`.
pub fn build_task_state(ist_stack_tops: [VirtAddr; IST_SLOT_COUNT]) -> TaskStateSegment {
    let mut task_state = TaskStateSegment::new();
    for (slot, top) in IstSlot::ALL.into_iter().zip(ist_stack_tops) {
        task_state.interrupt_stack_table[slot as usize] = top;
    }
    task_state
}

/// A GDT with kernel code and data segments and a descriptor for `task_state`.
pub fn build_gdt(task_state: &'static TaskStateSegment) -> (GlobalDescriptorTable, Selectors) {
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let task_state = gdt.append(Descriptor::tss_segment(task_state));
    let selectors = Selectors {
        kernel_code,
        kernel_data,
        task_state,
    };
    (gdt, selectors)
}

/// Makes `gdt` this CPU's GDT, reloads the segment registers and loads the TSS.
pub fn load_on_this_cpu(gdt: &'static GlobalDescriptorTable, selectors: &Selectors) {
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // is 'static: a 64-bit kernel code segment, a kernel data segment and an
    // available TSS whose IST stacks are 'static too. The TSS descriptor is
    // in this CPU's own GDT, so `ltr` marking it busy affects no other CPU.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.task_state);
    }
}

static BOOTSTRAP_TASK_STATE: Once<TaskStateSegment> = Once::new();
static BOOTSTRAP_GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Builds and loads the bootstrap CPU's TSS and GDT.
pub fn init_bootstrap_cpu() {
    let task_state = BOOTSTRAP_TASK_STATE.call_once(|| {
        build_task_state(IstSlot::ALL.map(|slot| stacks::bootstrap_ist_stack(slot).top))
    });
    let (gdt, selectors) = BOOTSTRAP_GDT.call_once(|| build_gdt(task_state));
    load_on_this_cpu(gdt, selectors);
}

/// Pages of each interrupt stack of an application processor.
const AP_IST_STACK_PAGES: u64 = (stacks::IST_STACK_SIZE / 4096) as u64;

/// Builds and loads an application processor's TSS and GDT, with freshly
/// allocated interrupt stacks (each above a guard page). The tables are
/// leaked: a CPU uses them until the machine stops.
pub fn init_application_cpu() {
    let ist_stack_tops = IstSlot::ALL.map(|slot| {
        stacks::allocate_stack(AP_IST_STACK_PAGES)
            .unwrap_or_else(|error| panic!("no {slot:?} interrupt stack for an AP: {error}"))
            .top
    });
    let task_state: &'static TaskStateSegment =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(build_task_state(ist_stack_tops)));
    let (gdt, selectors) = build_gdt(task_state);
    let gdt: &'static GlobalDescriptorTable = alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt));
    load_on_this_cpu(gdt, &selectors);
}
