//! Every rule of the contract that can be broken, and the message that names it.

mod common;

use quickmap::sim::{SimConfig, SimMachine, SimPage, DIRECT_MAP_BASE, WINDOW_BASE};
use quickmap::{MemoryAttribute, PhysAddr, VirtAddr, PAGE_SIZE};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig::default())
}

#[test]
#[should_panic(
    expected = "quickmap: nesting beyond capacity: CPU 0 already holds all 4 of its windows; \
                remove a mapping before entering another (or use `try_enter`/`try_map` where \
                running out is expected)"
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
    expected = "quickmap: double remove: window 0 of CPU 0 at 0xffffc00000000000 is not mapped; \
                remove each address `enter` returned exactly once (or use `map`, whose guard \
                removes itself)"
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
    expected = "quickmap: remove on another CPU: window 0xffffc00000008000 belongs to CPU 1 but remove runs on CPU 3 \
                (was the caller migrated while holding the mapping, or the address handed to another CPU?); \
                remove a mapping on the CPU, and in the context, that entered it"
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
    expected = "quickmap: remove of a foreign address: 0x1000 is neither in the window region nor in the direct map; \
                pass `remove` only an address `enter` returned, unchanged (or use `map`, whose guard removes itself)"
)]
fn remove_of_a_foreign_address() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    // SAFETY: deliberately breaks the contract.
    unsafe { quickmap.remove(VirtAddr(0x1000)) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0xffffc00000001000 is inside the window region but \
                not the start of a window; pass `remove` only an address `enter` returned, unchanged"
)]
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
    expected = "quickmap: sleep while mapped: the thread on CPU 0 would block while holding 2 quickmap window(s); \
                remove them first"
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
    expected = "quickmap: unaligned page: physical address 0x10010 is not a multiple of the page size 0x1000; \
                a `HeldPage` reports the address of its page's first byte"
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
    expected = "quickmap: page out of range: physical address 0x40000 is not below the physical limit 0x40000; \
                map only pages below `Config::phys_limit`"
)]
fn page_out_of_range() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let _ = quickmap.enter(&SimPage::new(64));
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 2 bytes at offset 4095 run past the 4096-byte page; \
                keep offset + length within the page"
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
    expected = "quickmap: called under a spin lock (1 held), which the FreeBSD context policy forbids \
                (\"safe under all types of locks except spin mutexes\"); map before taking the lock or \
                after releasing it"
)]
fn freebsd_policy_forbids_spin_locks() {
    let machine = machine();
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        machine.platform_with_policy::<quickmap::sim::FreeBsdPolicy>(),
        machine.mmu(),
    );
    machine.set_spin_locks_held(1);
    let _ = quickmap.map(&SimPage::high_memory(&machine, 0));
}

#[test]
#[should_panic(
    expected = "quickmap: called in primary interrupt context, which the FreeBSD context policy forbids \
                (\"all thread contexts except primary interrupt context\"); map from the interrupt's \
                thread instead"
)]
fn freebsd_policy_forbids_primary_interrupt_context() {
    let machine = machine();
    let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        machine.platform_with_policy::<quickmap::sim::FreeBsdPolicy>(),
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

#[test]
#[should_panic(
    expected = "quickmap: copy_page needs two windows: it maps source and destination at once, but this \
                instance has 1 window(s) per CPU; build it with at least 2 (4 recommended), or copy \
                through a buffer with `copy_from_pages` and `copy_to_pages`"
)]
fn copy_page_with_one_window() {
    let machine = machine();
    let quickmap = machine.quickmap::<1>();
    let (source, destination) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    quickmap.copy_page(&source, &destination);
}

/// Refused up front, whatever the pages: even two direct-map pages, which need no
/// window, so that an instance with one window fails at its first copy, not at the
/// first copy that happens to need two windows.
#[test]
#[should_panic(expected = "quickmap: copy_page needs two windows")]
fn copy_page_with_one_window_is_refused_even_for_direct_map_pages() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<1>();
    quickmap.copy_page(&SimPage::new(0), &SimPage::new(1));
}

#[test]
fn copy_page_with_two_windows_uses_both() {
    let machine = machine();
    let quickmap = machine.quickmap::<2>();
    let (source, destination) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    machine.phys_write(source.pa, &common::pattern(1, 1));
    quickmap.copy_page(&source, &destination);
    assert_eq!(
        common::phys_page(&machine, destination.pa),
        common::pattern(1, 1)
    );
    assert_eq!(quickmap.windows_in_use(0), 0);
}

#[test]
#[should_panic(
    expected = "quickmap: copy outside the pages: 3 bytes at offset 8190 run past 2 page(s) (8192 bytes); \
                keep offset + length within the run"
)]
fn copy_outside_the_pages() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages = [
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    ];
    quickmap.copy_to_pages(&pages, 2 * PAGE_SIZE - 2, b"xyz");
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: unknown CPU: the platform says CPU 2, but quickmap was set up for 1 CPUs; \
                give `QuickMap::new` one `CpuWindows` for each CPU the platform numbers (from 0)"
)]
fn unknown_cpu() {
    let machine = machine();
    let quickmap = one_cpu_quickmap(&machine);
    machine.on_cpu(2);
    let _ = quickmap.enter(&SimPage::high_memory(&machine, 0));
}

/// A quickmap that serves CPU 0 only, on a machine with more.
#[cfg(feature = "contract-checks")]
fn one_cpu_quickmap(
    machine: &SimMachine,
) -> quickmap::QuickMap<
    quickmap::sim::SimPlatform<'_>,
    quickmap::sim::SimMmu<'_>,
    4,
    quickmap::Deferred,
> {
    let cpus: &'static [quickmap::CpuWindows<4>] =
        Box::leak(Box::new([const { quickmap::CpuWindows::new() }; 1]));
    quickmap::QuickMap::new(
        machine.quickmap_config(),
        machine.platform(),
        machine.mmu(),
        cpus,
    )
    .expect("a good configuration")
}

#[test]
fn config_errors_are_errors() {
    use quickmap::{ConfigError, CpuWindows, QuickMap};
    let machine = machine();
    let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 2]));
    let config = quickmap::Config {
        window_base: VirtAddr(WINDOW_BASE + PAGE_SIZE),
        ..machine.quickmap_config()
    };
    let error = QuickMap::<_, _, 4>::new(config, machine.platform(), machine.mmu(), cpus)
        .err()
        .expect("a misaligned base is refused");
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.source().is_none());
    assert_eq!(boxed.to_string(), error.to_string());
    assert!(matches!(
        boxed.downcast_ref::<ConfigError>(),
        Some(ConfigError::BaseMisaligned { .. })
    ));
}

// --- Where a rule's panic points: at the caller's line, never at quickmap's. ---

use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::{Arc, Mutex, PoisonError};

/// The tests that replace the panic hook take turns.
static PANIC_HOOK: Mutex<()> = Mutex::new(());

/// Run `body`, which must panic, with a panic hook that records where the panic
/// says it happened; then put the previous hook back. Panics of other threads (tests
/// run in parallel) go to the previous hook meanwhile. Returns the file, the line and
/// the message.
fn panic_site(body: impl FnOnce()) -> (String, u32, String) {
    let _turn = PANIC_HOOK.lock().unwrap_or_else(PoisonError::into_inner);
    let this_thread = std::thread::current().id();
    let seen: Arc<Mutex<Option<(String, u32)>>> = Arc::default();
    let previous: Arc<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> = Arc::from(panic::take_hook());
    let hook = {
        let (seen, previous) = (Arc::clone(&seen), Arc::clone(&previous));
        move |info: &PanicHookInfo<'_>| {
            if std::thread::current().id() == this_thread {
                let location = info.location().expect("panics have a location");
                *seen.lock().unwrap() = Some((location.file().to_owned(), location.line()));
            } else {
                previous(info);
            }
        }
    };
    panic::set_hook(Box::new(hook));
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| previous(info)));
    let payload = outcome.expect_err("the call should panic");
    let message = match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|message| message.to_string())
            .unwrap_or_default(),
    };
    let (file, line) = seen.lock().unwrap().take().expect("the hook saw the panic");
    (file, line, message)
}

/// `$call` must panic with rule `$rule` of quickmap (the start of its name), and the
/// panic must name this file and the line of `$call`: keep the invocation short enough
/// for rustfmt to leave it on one line. `unsafe $call` runs a call that breaks an
/// unsafe contract on purpose.
macro_rules! assert_rule {
    (unsafe $call:expr, $rule:literal) => {
        // SAFETY: none: the call breaks the contract on purpose, to show quickmap
        // catches it before anything is touched.
        assert_rule!(@checked unsafe { $call }, $rule)
    };
    ($call:expr, $rule:literal) => {
        assert_rule!(@checked $call, $rule)
    };
    (@checked $call:expr, $rule:literal) => {{
        let line = line!();
        let (file, at, message) = panic_site(|| {
            let _ = $call;
        });
        assert!(
            message.starts_with(concat!("quickmap: ", $rule)),
            "{message}"
        );
        assert_eq!(
            (file.as_str(), at),
            (file!(), line),
            "where `{message}` points"
        );
    }};
}

#[test]
fn rule_panics_of_enter_and_map_point_at_the_caller() {
    let machine = machine();
    let qm = machine.quickmap::<2>();
    let unaligned = SimPage {
        pa: PhysAddr(0x10010),
        attribute: MemoryAttribute::WriteBack,
    };
    let beyond = SimPage::new(64);
    let page = |i| SimPage::high_memory(&machine, i);
    assert_rule!(qm.enter(&unaligned), "unaligned page");
    assert_rule!(qm.enter(&beyond), "page out of range");
    assert_rule!(qm.try_enter(&unaligned), "unaligned page");
    assert_rule!(qm.map(&beyond), "page out of range");
    assert_rule!(qm.try_map(&beyond), "page out of range");
    assert_rule!(qm.zero_page(&beyond), "page out of range");
    let (a, b, c) = (page(0), page(1), page(2));
    let _held = (qm.map(&a), qm.map(&b));
    assert_rule!(qm.enter(&c), "nesting beyond capacity");
    assert_rule!(qm.map(&c), "nesting beyond capacity");
    assert_rule!(qm.zero_page(&c), "nesting beyond capacity");
    assert_rule!(qm.assert_may_sleep(), "sleep while mapped");
}

#[test]
fn rule_panics_of_the_deferred_pool_point_at_the_caller() {
    let machine = machine();
    let qm = machine.quickmap_deferred::<2>();
    let page = |i| SimPage::high_memory(&machine, i);
    let (a, b, c) = (page(0), page(1), page(2));
    drop((qm.map(&c), qm.map(&b)));
    let _held = (qm.map(&a), qm.map(&b));
    assert_rule!(qm.enter(&c), "nesting beyond capacity");
    assert_rule!(qm.map(&b), "nesting beyond capacity");
}

#[test]
fn rule_panics_of_page_work_point_at_the_caller() {
    let machine = machine();
    let one = machine.quickmap::<1>();
    let qm = machine.quickmap::<2>();
    let page = |i| SimPage::high_memory(&machine, i);
    let (a, b) = (page(0), page(1));
    let beyond = SimPage::new(64);
    let mut buf = [0u8; 8];
    assert_rule!(one.copy_page(&a, &b), "copy_page needs two windows");
    assert_rule!(qm.copy_page(&a, &beyond), "page out of range");
    let run = [a, beyond];
    let end = PAGE_SIZE - 4;
    assert_rule!(qm.copy_to_pages(&run, end, &buf), "page out of range");
    assert_rule!(qm.copy_from_pages(&run, end, &mut buf), "page out of range");
    let past = 2 * PAGE_SIZE;
    assert_rule!(qm.copy_to_pages(&run, past, &buf), "copy outside the pages");
    assert_rule!(qm.copy_from_pages(&run, past, &mut buf), "copy outside");
    let _held = qm.map(&a);
    assert_rule!(qm.copy_page(&b, &a), "nesting beyond capacity");
}

#[test]
fn rule_panics_of_the_freebsd_context_policy_point_at_the_caller() {
    let machine = machine();
    let qm = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        machine.platform_with_policy::<quickmap::sim::FreeBsdPolicy>(),
        machine.mmu(),
    );
    let page = SimPage::high_memory(&machine, 0);
    machine.set_spin_locks_held(1);
    assert_rule!(qm.map(&page), "called under a spin lock");
    machine.set_spin_locks_held(0);
    let irq = |handler: &dyn Fn()| machine.interrupt(handler);
    assert_rule!(irq(&|| drop(qm.map(&page))), "called in primary interrupt");
}

#[test]
#[cfg(feature = "contract-checks")]
fn rule_panics_of_remove_point_at_the_caller() {
    let machine = machine();
    let qm = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let va = qm.enter(&page);
    // SAFETY: `va` came from `enter` and is not used after.
    unsafe { qm.remove(va) };
    assert_rule!(unsafe qm.remove(va), "double remove");
    assert_rule!(unsafe qm.remove(VirtAddr(0x1000)), "remove of a foreign address");
    let guard_page = VirtAddr(WINDOW_BASE + PAGE_SIZE);
    assert_rule!(unsafe qm.remove(guard_page), "remove of a foreign address");
    machine.on_cpu(1);
    let va = qm.enter(&page);
    machine.on_cpu(2);
    assert_rule!(unsafe qm.remove(va), "remove on another CPU");
}

#[test]
#[cfg(feature = "contract-checks")]
fn rule_panics_of_an_unknown_cpu_point_at_the_caller() {
    let machine = machine();
    let qm = one_cpu_quickmap(&machine);
    let page = SimPage::high_memory(&machine, 0);
    machine.on_cpu(3);
    assert_rule!(qm.enter(&page), "unknown CPU");
    assert_rule!(qm.try_map(&page), "unknown CPU");
    assert_rule!(qm.flush_local(), "unknown CPU");
    assert_rule!(qm.assert_may_sleep(), "unknown CPU");
}

#[test]
fn rule_panics_of_views_point_at_the_caller() {
    let machine = machine();
    let qm = machine.quickmap::<2>();
    let page = |i| SimPage::high_memory(&machine, i);
    let pages = [page(0), page(1), page(2), page(3)];
    let beyond = [page(0), SimPage::new(64)];
    assert_rule!(qm.map_pages(&pages), "view size");
    assert_rule!(qm.try_map_pages(&pages[..0]), "view size");
    assert_rule!(qm.map_pages(&beyond), "page out of range");
    let view = qm.map_pages(&pages[..2]); // both windows: 2 pages and the guard
    assert_rule!(view.read_u32(2 * PAGE_SIZE - 2), "access outside the view");
    assert_rule!(qm.map_pages(&pages[2..3]), "no room for the view");
    assert_rule!(qm.assert_may_sleep(), "sleep while mapped");
    drop(view);
    let freebsd = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
        machine.quickmap_config(),
        machine.platform_with_policy::<quickmap::sim::FreeBsdPolicy>(),
        machine.mmu(),
    );
    machine.set_spin_locks_held(1);
    assert_rule!(freebsd.map_pages(&pages), "called under a spin lock");
    machine.set_spin_locks_held(0);
}
