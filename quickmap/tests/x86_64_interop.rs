//! The `x86_64` feature: frames and addresses of the `x86_64` crate on the simulated
//! machine, and the x86_64 backend built from a `PageTable` over the region the layout
//! says.

mod common;

use common::{pattern, phys_page};
use quickmap::arch::x86_64::{leaf_tables, window_pte, HeldFrame, X86Mmu};
use quickmap::sim::{SimConfig, SimMachine, SimPage, DIRECT_MAP_BASE, WINDOW_BASE};
use quickmap::{HeldPage, MemoryAttribute, PhysAddr, VirtAddr, WindowLayout, PAGE_SIZE};
use x86_64::structures::paging::{PageTable, PhysFrame, Size4KiB};

/// A machine whose memory reaches past physical address 0x1234_6000 (the simulated
/// memory is allocated zeroed, so untouched pages cost nothing).
fn big_machine() -> SimMachine {
    SimMachine::new(SimConfig {
        cpus: 2,
        phys_pages: 0x1_2400,
        direct_map_pages: 16,
    })
}

fn frame(pa: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::from_start_address(x86_64::PhysAddr::new(pa)).unwrap()
}

#[test]
fn a_held_frame_maps_its_own_frame_and_no_other() {
    let machine = big_machine();
    let quickmap = machine.quickmap::<4>();
    // SAFETY: simulated memory is never freed or reused.
    let held = unsafe { HeldFrame::new(frame(0x1234_5000)) };
    let content = pattern(0x12345, 1);
    {
        let mapping = quickmap.map(&held);
        assert_eq!(
            machine.window_pte(mapping.va()),
            Some((PhysAddr(0x1234_5000), MemoryAttribute::WriteBack)),
            "the window's entry names the frame's address (not its number, not a neighbour)"
        );
        mapping.write(0, &content);
    }
    assert_eq!(phys_page(&machine, PhysAddr(0x1234_5000)), content);
    for neighbour in [0x1234_4000, 0x1234_6000] {
        assert!(
            phys_page(&machine, PhysAddr(neighbour))
                .iter()
                .all(|&b| b == 0),
            "frame {neighbour:#x} was written"
        );
    }
}

#[test]
fn a_held_frame_and_a_sim_page_of_one_address_reach_the_same_bytes() {
    let machine = big_machine();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 7);
    let x86_pa = x86_64::PhysAddr::try_from(page.pa).unwrap();
    // SAFETY: simulated memory is never freed or reused.
    let held = unsafe { HeldFrame::new(PhysFrame::from_start_address(x86_pa).unwrap()) };
    assert_eq!(held.phys_addr(), page.pa);
    quickmap.map(&page).write_u64(8, 0x0123_4567_89ab_cdef);
    assert_eq!(quickmap.map(&held).read_u64(8), 0x0123_4567_89ab_cdef);
}

#[test]
fn a_held_frame_keeps_its_attribute() {
    let machine = big_machine();
    let quickmap = machine.quickmap::<4>();
    // Both inside the direct map: only write-back may take it.
    // SAFETY: simulated memory is never freed or reused.
    let ram = unsafe { HeldFrame::new(frame(0x3000)) };
    // SAFETY: as above; the simulated frame has no other mapping with another attribute.
    let frame_buffer =
        unsafe { HeldFrame::with_attribute(frame(0x4000), MemoryAttribute::WriteCombining) };
    assert_eq!(quickmap.map(&ram).va(), VirtAddr(DIRECT_MAP_BASE + 0x3000));
    let mapping = quickmap.map(&frame_buffer);
    assert!(
        mapping.va().0 >= WINDOW_BASE,
        "a window, not the direct map"
    );
    assert_eq!(
        machine.window_pte(mapping.va()),
        Some((PhysAddr(0x4000), MemoryAttribute::WriteCombining))
    );
}

#[test]
fn window_addresses_are_canonical_x86_64_addresses() {
    let machine = big_machine();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let va = quickmap.map(&page).va();
    let x86_va = x86_64::VirtAddr::try_from(va).unwrap();
    assert_eq!(x86_va.as_u64(), va.0 as u64);
    assert_eq!(VirtAddr::from(x86_va), va);
}

/// The backend takes exactly the region the layout gives `cpus` CPUs: every window and
/// guard page of every CPU has its entry, and the page after the region has none.
fn x86_backend_covers_the_layout(windows_per_cpu: usize, cpus: usize) {
    let layout = WindowLayout::guarded(VirtAddr(WINDOW_BASE), windows_per_cpu);
    let pages = layout.region_pages(cpus);
    assert_eq!(leaf_tables(layout.base, layout.region_len(cpus)), 1);
    let table: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
    // SAFETY: nothing is entered or invalidated; the table is this test's alone.
    let mmu = unsafe { X86Mmu::from_page_table(layout.base, pages, table) };
    for cpu in 0..cpus {
        for slot in 0..windows_per_cpu {
            let window = layout.window_va(cpu, slot);
            assert_eq!(mmu.read_pte(window), 0);
            assert_eq!(mmu.read_pte(window.add(PAGE_SIZE)), 0, "guard page");
        }
    }
    let past = layout.base.add(layout.region_len(cpus));
    let outside = std::panic::catch_unwind(|| mmu.read_pte(past));
    assert!(
        outside.is_err(),
        "{cpus} CPUs x {windows_per_cpu}: {past} is past the region"
    );
}

#[test]
fn the_x86_backend_covers_the_region_the_layout_gives() {
    for (windows, cpus) in [(1, 1), (4, 1), (4, 16), (4, 64), (5, 3), (32, 8), (32, 1)] {
        x86_backend_covers_the_layout(windows, cpus);
    }
}

#[test]
fn the_region_of_qmks_deferred_instance_fills_one_table_and_one_cpu_more_does_not_fit() {
    let layout = WindowLayout::guarded(VirtAddr(WINDOW_BASE), 32);
    assert_eq!(layout.region_pages(8), 512);
    assert_eq!(leaf_tables(layout.base, layout.region_len(9)), 2);
    let table: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let table = table; // moved in whole, not reborrowed
                           // SAFETY: refused before any entry is written.
        unsafe { X86Mmu::from_page_table(layout.base, layout.region_pages(9), table) }
    }));
    let message = *refused.err().unwrap().downcast::<String>().unwrap();
    assert!(
        message.contains("does not fit in one 512-entry page table"),
        "{message}"
    );
}

#[test]
fn the_window_entry_of_a_frame_names_the_frame() {
    // The entry the x86_64 backend would write for a `HeldFrame`.
    // SAFETY: nothing is mapped.
    let held = unsafe { HeldFrame::new(frame(0x1234_5000)) };
    let pte = window_pte(held.phys_addr(), held.memory_attribute());
    assert_eq!(pte & quickmap::arch::x86_64::PTE_ADDRESS_MASK, 0x1234_5000);
}
