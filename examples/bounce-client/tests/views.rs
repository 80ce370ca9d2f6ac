//! Point 4: K pages at consecutive addresses: `map_pages` from scattered held pages and
//! `map_range` from a physically contiguous run; copies across the page boundaries of
//! the view; and, on the simulated machine (and on the host model), one byte past the
//! view faults.

#[macro_use]
mod common;

use bounce_client::host_mmu::{host_quickmap, HostQuickMap};
use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::{HeldRange, Mmu, PhysAddr, VirtAddr, PAGE_SIZE};

fn quickmap() -> HostQuickMap<4> {
    host_quickmap(32, 8).unwrap()
}

/// Whether reading the byte at `va` faults. Deliberately outside what `Mmu::read_bytes`
/// may be given (a mapped range): both simulated MMUs turn a missing translation into a
/// panic (`sim: page fault`, `host_mmu: page fault`) instead of touching memory.
fn faults<M: Mmu>(mmu: &M, va: VirtAddr) -> bool {
    let touched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut byte = [0u8];
        // SAFETY: deliberately breaks `read_bytes`' contract (the address may be
        // unmapped): the simulated MMUs panic on a missing translation, touching
        // nothing. Never do this with a backend whose addresses are real.
        unsafe { mmu.read_bytes(va, &mut byte) };
    }));
    match touched {
        Ok(()) => false,
        Err(payload) => {
            let message = payload.downcast::<String>().map(|m| *m).unwrap_or_default();
            assert!(message.contains("page fault"), "{message}");
            true
        }
    }
}

#[test]
fn scattered_pages_side_by_side_take_a_copy_across_their_boundary() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    // Far apart, and out of order, in physical memory.
    let pages = [mmu.high_frame(9), mmu.high_frame(2), mmu.high_frame(5)];
    let view = quickmap.map_pages(&pages);
    assert_eq!((view.pages(), view.len()), (3, 3 * PAGE_SIZE));
    view.write(PAGE_SIZE - 3, b"abcdef"); // three bytes on each side of the boundary
    view.write_u64(2 * PAGE_SIZE - 4, 0x0102_0304_0506_0708);
    assert_eq!(view.read_u64(2 * PAGE_SIZE - 4), 0x0102_0304_0506_0708);
    // Page by page, at consecutive addresses.
    for (index, page) in pages.iter().enumerate() {
        let va = view.va().add(index * PAGE_SIZE);
        assert_eq!(mmu.entry(va).map(|(pa, _)| pa), Some(page.pa()));
    }
    drop(view);
    let mut tail = [0u8; 3];
    let mut head = [0u8; 3];
    mmu.phys_read(PhysAddr(pages[0].pa().0 + PAGE_SIZE as u64 - 3), &mut tail);
    mmu.phys_read(pages[1].pa(), &mut head);
    assert_eq!((&tail, &head), (b"abc", b"def"));
    let mut word = [0u8; 8];
    mmu.phys_read(
        PhysAddr(pages[1].pa().0 + PAGE_SIZE as u64 - 4),
        &mut word[..4],
    );
    mmu.phys_read(pages[2].pa(), &mut word[4..]);
    assert_eq!(u64::from_ne_bytes(word), 0x0102_0304_0506_0708);
    // Removed as one: every entry cleared and invalidated.
    assert_eq!(mmu.entries_present(), 0);
    assert_eq!(mmu.counters().invalidations, mmu.counters().entries_written);
}

#[test]
fn a_contiguous_run_takes_a_page_copied_across_its_boundary_and_gives_it_back() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let run = mmu.run(20, 3); // 2 windows: with the two single pages, all 4
    let (source, target) = (mmu.high_frame(0), mmu.high_frame(1));
    let page = quickmap.map(&source);
    for offset in (0..PAGE_SIZE).step_by(4) {
        page.write_u32(offset, offset as u32);
    }
    let view = quickmap.map_range(&run);
    assert_eq!(view.pages(), 3);
    // Half a page before the boundary between pages 1 and 2 of the run, half after.
    let offset = PAGE_SIZE + PAGE_SIZE / 2;
    view.copy_from(offset, &page);
    assert_eq!(view.read_u32(offset), 0);
    assert_eq!(view.read_u32(2 * PAGE_SIZE), (PAGE_SIZE / 2) as u32);
    // And back out, across the same boundary, into another page.
    view.copy_to(offset, &quickmap.map(&target));
    drop((view, page));
    let copied = quickmap.map(&target);
    for offset in (0..PAGE_SIZE).step_by(4) {
        assert_eq!(copied.read_u32(offset), offset as u32);
    }
    // Physically, the copy landed in frames 21 and 22 of the run.
    let mut word = [0u8; 4];
    mmu.phys_read(PhysAddr((22 * PAGE_SIZE) as u64), &mut word);
    assert_eq!(u32::from_ne_bytes(word), (PAGE_SIZE / 2) as u32);
}

#[test]
fn one_byte_past_a_view_faults_on_the_host_model() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    for count in 1..=7 {
        let pages: Vec<_> = (0..count).map(|index| mmu.high_frame(index)).collect();
        let view = quickmap.map_pages(&pages);
        assert!(!faults(mmu, view.va().add(view.len() - 1)), "{count} pages");
        assert!(
            faults(mmu, view.va().add(view.len())),
            "one past {count} pages"
        );
        assert!(
            faults(mmu, VirtAddr(view.va().0 - 1)),
            "one before {count} pages"
        );
    }
}

/// Pages `first ..` of the simulated machine, which never frees its memory.
struct SimRun {
    first: usize,
    pages: usize,
}

// SAFETY: 1. both values are fixed, and the address is a page's; 2. simulated memory is
// never freed or reused; 3. write-back is how simulated RAM is mapped.
unsafe impl HeldRange for SimRun {
    fn phys_addr(&self) -> PhysAddr {
        PhysAddr((self.first * PAGE_SIZE) as u64)
    }

    fn pages(&self) -> usize {
        self.pages
    }
}

#[test]
fn one_byte_past_a_view_faults_on_the_simulated_machine() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let scattered = [
        SimPage::high_memory(&machine, 7),
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 3),
    ];
    let run = SimRun {
        first: 40,
        pages: 2,
    };
    {
        let view = quickmap.map_pages(&scattered);
        view.write(PAGE_SIZE - 2, b"wxyz");
        assert!(!faults(quickmap.mmu(), view.va().add(view.len() - 1)));
        assert!(faults(quickmap.mmu(), view.va().add(view.len())));
    }
    let mut head = [0u8; 2];
    machine.phys_read(scattered[1].pa, &mut head);
    assert_eq!(&head, b"yz");
    {
        // Behind a single mapping that holds window 0, the view starts later: still a
        // guard page after it.
        let single = quickmap.map(&scattered[0]);
        let view = quickmap.map_range(&run);
        view.write_u32(PAGE_SIZE - 2, u32::from_ne_bytes(*b"runs"));
        assert!(faults(quickmap.mmu(), view.va().add(view.len())));
        assert!(faults(quickmap.mmu(), single.va().add(PAGE_SIZE)));
        drop((view, single));
    }
    let mut across = [0u8; 4];
    machine.phys_read(PhysAddr((41 * PAGE_SIZE - 2) as u64), &mut across);
    assert_eq!(&across, b"runs");
    // After the drop, the view's own addresses fault too (strict invalidation).
    let view_va = quickmap.map_pages(&scattered).va();
    assert!(faults(quickmap.mmu(), view_va));
}

#[test]
fn the_accessors_refuse_what_the_guard_page_would_catch() {
    // The safe API never reaches the guard page: the accessors check the view's length.
    let quickmap = quickmap();
    let pages = [quickmap.mmu().high_frame(0), quickmap.mmu().high_frame(1)];
    let view = quickmap.map_pages(&pages);
    let (caught, line) = catch!(view.read_u64(view.len() - 4));
    let remedy = "keep offset + length within the view";
    common::assert_rule(&caught, "access outside the view", file!(), line, remedy);
    let page = quickmap.mmu().high_frame(2);
    let mapping = quickmap.map(&page);
    let (caught, line) = catch!(view.copy_from(PAGE_SIZE + 1, &mapping));
    common::assert_rule(&caught, "access outside the view", file!(), line, remedy);
}
