//! The window region's size (`WindowLayout::region_len`, `region_pages`) against the
//! windows quickmap actually hands out and the span `QuickMap::new` guards.

use quickmap::sim::{SimConfig, SimMachine, SimPage, WINDOW_BASE};
use quickmap::{
    ConfigError, CpuWindows, Deferred, DirectMap, PhysAddr, QuickMap, VirtAddr, PAGE_SIZE,
};

/// Every window of every CPU, entered all at once, lies with its guard page inside the
/// region, and the last CPU's last window is no further than its stride allows.
fn every_window_lies_inside_the_region<const N: usize>(cpus: usize) {
    let machine = SimMachine::new(SimConfig {
        cpus,
        phys_pages: 16 + N,
        direct_map_pages: 16,
    });
    let quickmap = machine.quickmap::<N>();
    let layout = quickmap.layout();
    let (base, len) = (layout.base, layout.region_len(cpus));
    let pages: Vec<_> = (0..N).map(|i| SimPage::high_memory(&machine, i)).collect();
    let mut highest = base;
    for cpu in 0..cpus {
        machine.on_cpu(cpu);
        let mappings: Vec<_> = pages.iter().map(|page| quickmap.map(page)).collect();
        for mapping in &mappings {
            let va = mapping.va();
            let guard_end = va.add(2 * PAGE_SIZE);
            assert!(
                base <= va && guard_end <= base.add(len),
                "{cpus} CPUs x {N}: window {va} and its guard page end past the region's \
                 {len:#x} bytes from {base}"
            );
            assert!((va.0 - base.0) / PAGE_SIZE < layout.region_pages(cpus));
            highest = highest.max(va);
        }
    }
    // Tight: the region ends where the last CPU's padded share ends, no later.
    assert_eq!(highest, layout.window_va(cpus - 1, N - 1));
    assert!(base.add(len).0 - highest.0 <= layout.cpu_stride);
    assert_eq!(len, cpus * layout.cpu_stride);
}

#[test]
fn every_window_and_guard_page_lies_inside_the_region() {
    for cpus in [1, 2, 3, 5] {
        every_window_lies_inside_the_region::<1>(cpus);
        every_window_lies_inside_the_region::<4>(cpus);
        every_window_lies_inside_the_region::<5>(cpus);
        every_window_lies_inside_the_region::<32>(cpus);
    }
}

/// `QuickMap::new` keeps the direct map out of exactly `region_len` bytes: a direct
/// map that starts at the region's end is accepted, one a page earlier refused, and
/// one that ends at the region's base is accepted.
#[test]
fn new_guards_exactly_the_region_len() {
    let machine = SimMachine::new(SimConfig::default());
    let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 3]));
    let layout = quickmap::WindowLayout::guarded(VirtAddr(WINDOW_BASE), 4);
    let end = layout.base.add(layout.region_len(cpus.len()));
    let with_direct_map_at = |virt_start: VirtAddr| {
        let mut config = machine.quickmap_config();
        config.direct_map = Some(DirectMap {
            phys_start: PhysAddr(0),
            len: 16 * PAGE_SIZE as u64,
            virt_start,
        });
        // A fresh array each time: an accepted instance keeps the one it took.
        let fresh: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 3]));
        QuickMap::<_, _, 4>::new(config, machine.platform(), machine.mmu(), fresh).map(|_| ())
    };
    assert_eq!(with_direct_map_at(end), Ok(()));
    assert!(matches!(
        with_direct_map_at(VirtAddr(end.0 - PAGE_SIZE)),
        Err(ConfigError::DirectMapOverlapsWindows { .. })
    ));
    assert_eq!(
        with_direct_map_at(VirtAddr(layout.base.0 - 16 * PAGE_SIZE)),
        Ok(())
    );
    assert!(matches!(
        with_direct_map_at(VirtAddr(layout.base.0 - 15 * PAGE_SIZE)),
        Err(ConfigError::DirectMapOverlapsWindows { .. })
    ));
}

#[test]
fn two_instances_cannot_share_one_array_of_cpu_windows() {
    // A deferred instance trusts its per-window entries to describe its own region;
    // a second instance over the same state (another region) would take windows back
    // for pages its entries never mapped.
    let machine = SimMachine::new(SimConfig::default());
    let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 2]));
    let first = QuickMap::<_, _, 4, Deferred>::new(
        machine.quickmap_config(),
        machine.platform(),
        machine.mmu(),
        cpus,
    );
    assert!(first.is_ok());
    let second = QuickMap::<_, _, 4, Deferred>::new(
        machine.quickmap_config(),
        machine.platform(),
        machine.mmu(),
        &cpus[1..],
    );
    let error = second.err().expect("a second instance over taken windows");
    assert_eq!(error, ConfigError::WindowsAlreadyInUse { cpu: 0 });
    assert!(error.to_string().contains("already serve another QuickMap"));
}
