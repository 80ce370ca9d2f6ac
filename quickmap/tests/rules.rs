//! Every rule of the contract that can be broken, and the message that names it.

mod common;

use quickmap::sim::{SimConfig, SimMachine, SimPage, DIRECT_MAP_BASE, WINDOW_BASE};
use quickmap::{MemoryAttribute, PhysAddr, VirtAddr, PAGE_SIZE};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig::default())
}

#[test]
#[should_panic(
    expected = "quickmap: nesting beyond capacity: CPU 0 already holds all 4 of its windows"
)]
fn nesting_beyond_capacity() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..5).map(|i| SimPage::high_memory(&machine, i)).collect();
    let _held: Vec<_> = pages.iter().map(|p| quickmap.map(p)).collect();
}

#[test]
#[should_panic(expected = "quickmap: nesting beyond capacity: CPU 2 already holds all 4")]
fn an_interrupt_shares_the_capacity_of_its_cpu() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    machine.on_cpu(2);
    let pages: Vec<_> = (0..5).map(|i| SimPage::high_memory(&machine, i)).collect();
    let _held: Vec<_> = pages[..4].iter().map(|p| quickmap.map(p)).collect();
    machine.interrupt(|| drop(quickmap.map(&pages[4])));
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: double remove: window 0 of CPU 0 at 0xffffc00000000000 is not mapped"
)]
fn double_remove() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let va = quickmap.enter(&page);
    // SAFETY: deliberately breaks the contract; quickmap must catch the second remove.
    unsafe {
        quickmap.remove(va);
        quickmap.remove(va);
    }
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove on another CPU: window 0xffffc00000008000 belongs to CPU 1 but remove runs on CPU 3"
)]
fn remove_on_another_cpu() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    machine.on_cpu(1);
    let va = quickmap.enter(&SimPage::high_memory(&machine, 0));
    machine.on_cpu(3);
    // SAFETY: deliberately breaks the contract.
    unsafe { quickmap.remove(va) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0x1000 is neither in the window region nor in the direct map"
)]
fn remove_of_a_foreign_address() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    // SAFETY: deliberately breaks the contract.
    unsafe { quickmap.remove(VirtAddr(0x1000)) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(expected = "is inside the window region but not the start of a window")]
fn remove_of_a_guard_page() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let _held = quickmap.map(&page);
    // SAFETY: deliberately breaks the contract: the guard page after window 0.
    unsafe { quickmap.remove(VirtAddr(WINDOW_BASE + PAGE_SIZE)) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(expected = "is inside the window region but not the start of a window")]
fn remove_of_an_address_inside_a_window() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let va = quickmap.enter(&SimPage::high_memory(&machine, 0));
    // SAFETY: deliberately breaks the contract.
    unsafe { quickmap.remove(va.add(8)) };
}

#[test]
fn remove_of_a_direct_map_address_is_harmless() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let va = quickmap.enter(&SimPage::new(3));
    assert_eq!(va, VirtAddr(DIRECT_MAP_BASE + 3 * PAGE_SIZE));
    // SAFETY: `va` came from `enter`.
    unsafe { quickmap.remove(va) };
}

#[test]
#[should_panic(
    expected = "quickmap: sleep while mapped: the thread on CPU 0 would block while holding 2 quickmap window(s)"
)]
fn sleep_while_mapped() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let (a, b) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    let _a = quickmap.map(&a);
    let _b = quickmap.map(&b);
    quickmap.assert_may_sleep();
}

#[test]
fn may_sleep_after_every_mapping_is_gone() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    drop(quickmap.map(&SimPage::high_memory(&machine, 0)));
    let low = SimPage::new(0);
    let _direct = quickmap.map(&low);
    quickmap.assert_may_sleep();
}

#[test]
#[should_panic(
    expected = "quickmap: unaligned page: physical address 0x10010 is not a multiple of the page size 0x1000"
)]
fn unaligned_page() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage {
        pa: PhysAddr(0x10010),
        attribute: MemoryAttribute::WriteBack,
    };
    let _ = quickmap.enter(&page);
}

#[test]
#[should_panic(
    expected = "quickmap: page out of range: physical address 0x40000 is not below the physical limit 0x40000"
)]
fn page_out_of_range() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let _ = quickmap.enter(&SimPage::new(64));
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 2 bytes at offset 4095 run past the 4096-byte page"
)]
fn access_outside_the_page() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    quickmap
        .map(&SimPage::high_memory(&machine, 0))
        .write(4095, b"xy");
}

#[test]
#[should_panic(
    expected = "quickmap: called under a spin lock (1 held), which the FreeBSD context policy forbids"
)]
fn freebsd_policy_forbids_spin_locks() {
    let machine = machine();
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        common::FreeBsdRules(machine.platform()),
        machine.mmu(),
    );
    machine.set_spin_locks_held(1);
    let _ = quickmap.map(&SimPage::high_memory(&machine, 0));
}

#[test]
#[should_panic(
    expected = "quickmap: called in primary interrupt context, which the FreeBSD context policy forbids"
)]
fn freebsd_policy_forbids_primary_interrupt_context() {
    let machine = machine();
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        common::FreeBsdRules(machine.platform()),
        machine.mmu(),
    );
    machine.interrupt(|| drop(quickmap.map(&SimPage::high_memory(&machine, 0))));
}

#[test]
fn the_default_policy_allows_spin_locks_and_interrupt_handlers() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    machine.set_spin_locks_held(2);
    quickmap
        .map(&SimPage::high_memory(&machine, 0))
        .write_u64(0, 1);
    machine.interrupt(|| {
        quickmap
            .map(&SimPage::high_memory(&machine, 1))
            .write_u64(0, 2)
    });
}

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    use quickmap::{ConfigError, CpuWindows, QuickMap};
    let machine = machine();
    let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 2]));
    let good = machine.quickmap_config();
    let try_config = |config: quickmap::Config| {
        QuickMap::<_, _, 4>::new(config, machine.platform(), machine.mmu(), cpus).err()
    };

    let misaligned = quickmap::Config {
        window_base: VirtAddr(WINDOW_BASE + PAGE_SIZE),
        ..good
    };
    let error = try_config(misaligned).expect("a misaligned base is refused");
    assert!(matches!(error, ConfigError::BaseMisaligned { .. }));
    assert!(
        error
            .to_string()
            .contains("is not aligned to the CPU stride"),
        "{error}"
    );

    let wrapping = quickmap::Config {
        window_base: VirtAddr(usize::MAX - 8 * PAGE_SIZE + 1),
        ..good
    };
    assert!(matches!(
        try_config(wrapping),
        Some(ConfigError::RegionOverflows { .. })
    ));

    let mut unaligned_direct_map = good;
    unaligned_direct_map.direct_map.as_mut().unwrap().phys_start = PhysAddr(8);
    assert!(matches!(
        try_config(unaligned_direct_map),
        Some(ConfigError::DirectMapMisaligned { .. })
    ));

    let mut overlapping = good;
    overlapping.direct_map.as_mut().unwrap().virt_start = VirtAddr(WINDOW_BASE - PAGE_SIZE);
    assert!(matches!(
        try_config(overlapping),
        Some(ConfigError::DirectMapOverlapsWindows { .. })
    ));

    let mut past_the_limit = good;
    past_the_limit.phys_limit = PhysAddr(8 * PAGE_SIZE as u64);
    let error = try_config(past_the_limit).expect("a direct map past the limit is refused");
    assert!(matches!(error, ConfigError::DirectMapBeyondLimit { .. }));
    assert!(
        error
            .to_string()
            .contains("reaches past the physical limit 0x8000"),
        "{error}"
    );

    assert_eq!(try_config(good), None);
}

/// An x86_64 entry holds 52 bits of physical address: a limit above that is refused,
/// so the backend may write any address quickmap accepts without masking it.
#[test]
fn a_physical_limit_beyond_the_mmu_is_refused() {
    use quickmap::arch::x86_64::X86Mmu;
    use quickmap::{ConfigError, CpuWindows, QuickMap};
    let machine = machine();
    let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 2]));
    let entries: &'static mut [u64] = Box::leak(vec![0u64; 16].into_boxed_slice());
    let pointer = entries.as_mut_ptr();
    let build = |limit: u64| {
        // SAFETY: `entries` stands in for the region's 16 entries and lives forever;
        // nothing is entered, so no entry is written and no `invlpg` runs.
        let mmu = unsafe { X86Mmu::new(VirtAddr(WINDOW_BASE), 16, pointer) };
        let config = quickmap::Config {
            phys_limit: PhysAddr(limit),
            direct_map: None,
            ..machine.quickmap_config()
        };
        QuickMap::<_, _, 4>::new(config, machine.platform(), mmu, cpus).err()
    };
    let error = build(1 << 53).expect("53 bits of physical address are refused");
    assert!(matches!(
        error,
        ConfigError::PhysLimitBeyondMmu {
            mmu_limit: PhysAddr(0x10_0000_0000_0000),
            ..
        }
    ));
    assert!(
        error.to_string().contains("above the MMU backend's limit"),
        "{error}"
    );
    assert_eq!(build(1 << 52), None);
}
