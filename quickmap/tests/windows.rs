//! Behaviour of the window and direct-map paths on the simulated machine.

mod common;

#[cfg(feature = "contract-checks")]
use common::DoesNotPin;
use common::{pattern, phys_page, ForgetsInvalidation};
use quickmap::sim::{SimConfig, SimMachine, SimPage, DIRECT_MAP_BASE};
use quickmap::{MemoryAttribute, Mmu, VirtAddr, PAGE_SIZE};

#[test]
fn a_window_reaches_the_page_and_is_gone_after_remove() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 3);
    let va = quickmap.enter(&page);
    assert!(
        va.0 >= quickmap.layout().base.0,
        "high memory takes a window"
    );
    assert_eq!(machine.window_pte(va).map(|(pa, _)| pa), Some(page.pa));
    // SAFETY: `va` maps `page` until the remove below.
    unsafe { quickmap.mmu().write_bytes(va.add(10), b"quick") };
    // SAFETY: `va` came from `enter` in this context.
    unsafe { quickmap.remove(va) };
    assert_eq!(&phys_page(&machine, page.pa)[10..15], b"quick");
    assert_eq!(machine.window_pte(va), None, "entry cleared");
    assert!(!machine.tlb_holds(0, va), "translation invalidated");
    assert_eq!(quickmap.windows_in_use(0), 0);
}

#[test]
fn removed_window_faults() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let va = quickmap.map(&page).va();
    let touched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut byte = [0u8];
        // SAFETY: deliberately touches a removed window; the simulated MMU faults.
        unsafe { quickmap.mmu().read_bytes(va, &mut byte) };
    }));
    let message = *touched
        .expect_err("a removed window must fault")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("page fault"), "{message}");
}

#[test]
fn one_invalidation_and_one_pte_write_per_window_pair() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    for _ in 0..10 {
        quickmap.map(&page).write_u64(0, 1);
    }
    let counters = machine.counters();
    assert_eq!((counters.pte_writes, counters.invalidations), (10, 10));
    let stats = quickmap.total_stats();
    assert_eq!(
        (
            stats.window_maps,
            stats.invalidations,
            stats.direct_map_hits
        ),
        (10, 10, 0)
    );
}

#[test]
fn write_back_pages_in_the_direct_map_need_no_window() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let low = SimPage::new(5);
    let mapping = quickmap.map(&low);
    assert_eq!(mapping.va(), VirtAddr(DIRECT_MAP_BASE + 5 * PAGE_SIZE));
    assert_eq!(
        machine.critical_depth(machine.current_thread()),
        0,
        "the direct map pins nothing"
    );
    mapping.write(0, b"dmap");
    drop(mapping);
    assert_eq!(
        machine.counters().pte_writes + machine.counters().invalidations,
        0
    );
    assert_eq!(quickmap.total_stats().direct_map_hits, 1);
    assert_eq!(&phys_page(&machine, low.pa)[..4], b"dmap");
}

#[test]
fn other_memory_attributes_take_a_window_even_inside_the_direct_map() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    for attribute in MemoryAttribute::ALL
        .into_iter()
        .filter(|&a| a != MemoryAttribute::WriteBack)
    {
        let page = SimPage {
            attribute,
            ..SimPage::new(2)
        };
        let mapping = quickmap.map(&page);
        assert_eq!(
            machine.window_pte(mapping.va()),
            Some((page.pa, attribute)),
            "{attribute:?}"
        );
    }
}

#[test]
fn windows_are_released_in_any_order_and_reused() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..4).map(|i| SimPage::high_memory(&machine, i)).collect();
    let mut mappings: Vec<_> = pages.iter().map(|p| quickmap.map(p)).collect();
    assert_eq!(quickmap.windows_in_use(0), 0b1111);
    let second = mappings.remove(1).va();
    assert_eq!(
        quickmap.windows_in_use(0),
        0b1101,
        "the second window freed first"
    );
    let again = quickmap.map(&pages[1]);
    assert_eq!(again.va(), second, "the freed window is reused");
    drop(mappings.remove(0));
    drop(again);
    mappings.clear();
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(
        machine.critical_depth(machine.current_thread()),
        0,
        "every critical section closed"
    );
}

#[test]
fn an_interrupt_maps_a_page_while_the_thread_it_interrupted_holds_one() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let (thread_page, handler_page) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    machine.phys_write(handler_page.pa, &pattern(1, 7));
    let held = quickmap.map(&thread_page);
    held.write(0, &pattern(0, 1));
    let handler_va = machine.interrupt(|| {
        let mapping = quickmap.map(&handler_page);
        assert_ne!(mapping.va(), held.va(), "the handler gets its own window");
        mapping
            .compare(0, &pattern(1, 7))
            .expect("the handler sees its page");
        mapping.write_u64(8, 0xfeed);
        mapping.va()
    });
    held.compare(0, &pattern(0, 1))
        .expect("the thread still sees its page");
    drop(held);
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert!(!machine.tlb_holds(0, handler_va));
    assert_eq!(
        &phys_page(&machine, handler_page.pa)[8..16],
        &0xfeed_u64.to_le_bytes()
    );
}

#[test]
fn a_mapping_pins_its_thread() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let thread = machine.current_thread();
    let other = machine.spawn(0);
    let page = SimPage::high_memory(&machine, 0);
    let mapping = quickmap.map(&page);
    assert!(
        machine.migrate(thread, 1).is_err(),
        "no migration while mapped"
    );
    assert!(
        machine.switch_to(other).is_err(),
        "no preemption while mapped"
    );
    drop(mapping);
    machine
        .migrate(thread, 1)
        .expect("free to move once removed");
}

/// Enter page A then page B in the same window; whether B's contents come back.
fn second_page_reads_correctly<M: Mmu>(machine: &SimMachine, mmu: M) -> bool {
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        machine.platform(),
        mmu,
    );
    let (a, b) = (
        SimPage::high_memory(machine, 0),
        SimPage::high_memory(machine, 1),
    );
    machine.phys_write(a.pa, &pattern(0, 1));
    machine.phys_write(b.pa, &pattern(1, 1));
    let first = quickmap.map(&a);
    let window = first.va();
    first.read_u64(0);
    drop(first);
    let second = quickmap.map(&b);
    assert_eq!(second.va(), window, "the same window is reused");
    second.compare(0, &pattern(1, 1)).is_ok()
}

/// The teeth of the invalidation rule: with a backend that skips the invalidation, a
/// window re-entered for another page still reads the old page through the stale TLB.
#[test]
fn a_backend_that_skips_the_invalidation_reads_stale_data() {
    let machine = SimMachine::new(SimConfig::default());
    assert!(second_page_reads_correctly(&machine, machine.mmu()));
    let machine = SimMachine::new(SimConfig::default());
    assert!(
        !second_page_reads_correctly(&machine, ForgetsInvalidation(machine.mmu())),
        "without invalidation the stale translation must be caught"
    );
}

/// The teeth of the pinning rule: a platform without critical sections lets the thread
/// migrate with a window held, and the remove on the new CPU is caught.
#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(expected = "quickmap: remove on another CPU")]
fn a_platform_that_does_not_pin_is_caught_at_remove() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        DoesNotPin(machine.platform()),
        machine.mmu(),
    );
    let page = SimPage::high_memory(&machine, 0);
    let va = quickmap.enter(&page);
    machine
        .migrate(machine.current_thread(), 2)
        .expect("nothing pins the thread");
    // SAFETY: `va` came from `enter` in this thread (which the broken platform let
    // migrate: what the test shows is caught).
    unsafe { quickmap.remove(va) };
}

#[test]
fn zero_and_copy_pages() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let (source, destination, low) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
        SimPage::new(1),
    );
    machine.phys_write(source.pa, &pattern(0, 3));
    quickmap.copy_page(&source, &destination);
    assert_eq!(phys_page(&machine, destination.pa), pattern(0, 3));
    quickmap.copy_page(&destination, &low);
    assert_eq!(phys_page(&machine, low.pa), pattern(0, 3));
    quickmap.zero_page(&destination);
    assert_eq!(phys_page(&machine, destination.pa), vec![0; PAGE_SIZE]);
    assert_eq!(quickmap.windows_in_use(0), 0);
}

#[test]
fn copies_between_a_buffer_and_a_run_of_pages_at_unaligned_offsets() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    // Mixed high and direct-mapped pages, as an unmapped I/O buffer may be.
    let run = [
        SimPage::high_memory(&machine, 4),
        SimPage::new(7),
        SimPage::high_memory(&machine, 5),
    ];
    for (offset, len) in [
        (0, 3 * PAGE_SIZE),
        (1, 1),
        (4095, 2),
        (100, 2 * PAGE_SIZE + 7),
        (3 * PAGE_SIZE - 3, 3),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + offset) as u8).collect();
        quickmap.copy_to_pages(&run, offset, &data);
        let mut back = vec![0; len];
        quickmap.copy_from_pages(&run, offset, &mut back);
        assert_eq!(back, data, "offset {offset} len {len}");
        let whole: Vec<u8> = run.iter().flat_map(|p| phys_page(&machine, p.pa)).collect();
        assert_eq!(
            &whole[offset..offset + len],
            &data[..],
            "physical memory at offset {offset}"
        );
    }
}

/// A direct map that starts above physical 0: the pages below it take a window (the
/// fast check counts frames from the direct map's start, and a page below it takes the
/// slow check instead of being refused), pages inside it come back direct, and the
/// page rules still hold on both sides.
#[test]
fn pages_below_a_direct_map_that_starts_late_take_windows() {
    let machine = SimMachine::new(SimConfig::default());
    let mut config = machine.quickmap_config();
    let direct_map = config.direct_map.as_mut().unwrap();
    direct_map.phys_start = quickmap::PhysAddr(8 * PAGE_SIZE as u64);
    direct_map.len = 8 * PAGE_SIZE as u64;
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        config,
        machine.platform(),
        machine.mmu(),
    );
    let below = SimPage::new(2);
    machine.phys_write(below.pa, &pattern(2, 9));
    {
        let mapping = quickmap.map(&below);
        assert!(
            mapping.va().0 >= quickmap.layout().base.0,
            "below the direct map: a window"
        );
        assert_eq!(mapping.compare(0, &pattern(2, 9)), Ok(()));
    }
    let inside = SimPage::new(10);
    assert_eq!(
        quickmap.map(&inside).va(),
        VirtAddr(DIRECT_MAP_BASE + 2 * PAGE_SIZE)
    );
    for (pa, rule) in [
        (64 * PAGE_SIZE as u64, "page out of range"),
        (2 * PAGE_SIZE as u64 + 8, "unaligned page"),
        (10 * PAGE_SIZE as u64 + 8, "unaligned page"),
    ] {
        let page = SimPage {
            pa: quickmap::PhysAddr(pa),
            attribute: MemoryAttribute::WriteBack,
        };
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = quickmap.enter(&page);
        }));
        let message = *refused.expect_err(rule).downcast::<String>().unwrap();
        assert!(message.contains(rule), "{pa:#x}: {message}");
    }
}

/// The accessors a kernel reads back, per CPU.
#[test]
fn accessors_report_the_machine_the_instance_was_built_for() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    assert_eq!(quickmap.cpu_count(), 4);
    let direct_map = quickmap.direct_map().expect("the sim has a direct map");
    assert_eq!(direct_map.virt_start, VirtAddr(DIRECT_MAP_BASE));
    assert_eq!(direct_map.len, 16 * PAGE_SIZE as u64);
    let high = SimPage::high_memory(&machine, 0);
    machine.on_cpu(2);
    quickmap.map(&high).zero();
    quickmap.map(&high).zero();
    let on_cpu_2 = quickmap.stats(2);
    assert_eq!((on_cpu_2.window_maps, on_cpu_2.invalidations), (2, 2));
    assert_eq!(
        quickmap.stats(0),
        quickmap::Stats::default(),
        "CPU 0 did nothing"
    );
}

/// A mismatch names its offset and both bytes, also past the first chunk of a long
/// comparison that starts inside the page.
#[test]
fn compare_reports_the_first_differing_byte_and_says_where() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 1);
    let mapping = quickmap.map(&page);
    mapping.fill(0, PAGE_SIZE, 0x11);
    mapping.write(700, &[0x22]);
    let expected = vec![0x11; 1000];
    let mismatch = mapping.compare(100, &expected).unwrap_err();
    assert_eq!(
        mismatch,
        quickmap::Mismatch {
            offset: 700,
            expected: 0x11,
            found: 0x22
        }
    );
    assert_eq!(
        mismatch.to_string(),
        "byte at offset 0x2bc: expected 0x11, found 0x22"
    );
    assert_eq!(mapping.compare(701, &expected[..500]), Ok(()));
    assert_eq!(
        format!("{mapping:?}"),
        format!("Mapping {{ va: {:?} }}", mapping.va())
    );
}
