//! Running out of windows is a condition, not a bug: `try_enter` and `try_map` return an
//! `EnterError` exactly when every window of the CPU is in use (on strict and deferred
//! instances, in threads and in interrupt handlers), and leave the CPU as they found it.
mod common;

use std::cell::Cell;

use common::{with_interrupt_controller, Hook, MidPairInterrupts, Phase};
use proptest::prelude::*;
use quickmap::sim::{SimConfig, SimMachine, SimMmu, SimPage, SimPlatform, DIRECT_MAP_BASE};
use quickmap::{
    Deferred, EnterError, Invalidation, MemoryAttribute, QuickMap, Strict, VirtAddr, PAGE_SIZE,
};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig {
        cpus: 4,
        phys_pages: 256,
        direct_map_pages: 16,
    })
}

type SimQuickMap<'m, const N: usize, I> = QuickMap<SimPlatform<'m>, SimMmu<'m>, N, I>;

/// All `N` windows in use, as a mask.
fn all<const N: usize>() -> u32 {
    u32::MAX >> (32 - N)
}

/// Fill the windows of `cpu` one `try_enter` at a time, then check that the next one
/// fails, changes nothing and names the CPU; then give one back and take it again.
fn fails_exactly_at_capacity<const N: usize, I: Invalidation>(
    machine: &SimMachine,
    quickmap: &SimQuickMap<'_, N, I>,
    cpu: usize,
) {
    machine.on_cpu(cpu);
    let thread = machine.current_thread();
    let pages: Vec<SimPage> = (0..=N)
        .map(|i| SimPage::high_memory(machine, 10 * cpu + i))
        .collect();
    let mut held = Vec::new();
    for (k, page) in pages[..N].iter().enumerate() {
        assert_eq!(machine.critical_depth(thread), k as u32);
        let va = quickmap
            .try_enter(page)
            .unwrap_or_else(|error| panic!("window {k} of {N}: {error}"));
        assert_eq!(
            machine.window_pte(va),
            Some((page.pa, MemoryAttribute::WriteBack))
        );
        held.push(va);
    }
    assert_eq!(quickmap.windows_in_use(cpu), all::<N>());

    let (counters, stats) = (machine.counters(), quickmap.stats(cpu));
    let error = EnterError { cpu, capacity: N };
    assert_eq!(quickmap.try_enter(&pages[N]), Err(error), "a new page");
    assert_eq!(
        quickmap.try_map(&pages[0]).err(),
        Some(error),
        "a page a window in use maps already: windows are never shared"
    );
    assert_eq!(quickmap.windows_in_use(cpu), all::<N>());
    assert_eq!(
        machine.critical_depth(thread),
        N as u32,
        "preemption is as it was: no critical section is left open by the failure"
    );
    assert_eq!(
        machine.counters(),
        counters,
        "no entry written, nothing invalidated or flushed"
    );
    assert_eq!(quickmap.stats(cpu), stats, "nothing counted");

    // The direct map needs no window.
    let direct = SimPage::new(3);
    assert_eq!(
        quickmap.try_enter(&direct),
        Ok(VirtAddr(DIRECT_MAP_BASE + 3 * PAGE_SIZE))
    );
    // Another CPU has windows of its own.
    let other = (cpu + 1) % machine.config().cpus;
    machine.on_cpu(other);
    drop(
        quickmap
            .try_map(&pages[N])
            .expect("another CPU's windows are free"),
    );
    machine.on_cpu(cpu);

    // Give one back: the next try takes it.
    let given_back = held.pop().unwrap();
    // SAFETY: entered above in this context, and not used again.
    unsafe { quickmap.remove(given_back) };
    let va = quickmap
        .try_enter(&pages[N])
        .expect("a window was given back");
    assert_eq!(
        machine.window_pte(va),
        Some((pages[N].pa, MemoryAttribute::WriteBack))
    );
    held.push(va);
    assert_eq!(quickmap.try_enter(&pages[N - 1]), Err(error));
    for va in held {
        // SAFETY: entered above in this context, and not used again.
        unsafe { quickmap.remove(va) };
    }
    assert_eq!(quickmap.windows_in_use(cpu), 0);
    assert_eq!(machine.critical_depth(thread), 0);
}

#[test]
fn try_enter_fails_exactly_at_capacity_on_a_strict_instance() {
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap::<1>(), 0);
    }
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap::<2>(), 1);
    }
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap::<4>(), 2);
    }
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap::<32>(), 3);
    }
}

#[test]
fn try_enter_fails_exactly_at_capacity_on_a_deferred_instance() {
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap_deferred::<1>(), 0);
    }
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap_deferred::<4>(), 1);
    }
    {
        let machine = machine();
        fails_exactly_at_capacity(&machine, &machine.quickmap_deferred::<32>(), 2);
    }
}

/// In the deferred pool a free window that still maps an old page is not clean, but
/// it is not in use either: with no clean window left, `try_enter` flushes and
/// succeeds. Only when every window is claimed does it fail, and then it flushes
/// nothing.
#[test]
fn a_dirty_deferred_pool_is_not_full() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<4>();
    let pages: Vec<SimPage> = (0..14).map(|i| SimPage::high_memory(&machine, i)).collect();
    let page = |i: usize| &pages[i];
    for i in 0..4 {
        drop(quickmap.try_map(page(i)).unwrap());
    }
    assert_eq!(machine.counters().full_flushes, 0);
    assert_eq!(quickmap.windows_in_use(0), 0, "free, and all four dirty");

    let held: Vec<_> = (4..8).map(|i| quickmap.try_map(page(i)).unwrap()).collect();
    assert_eq!(
        machine.counters().full_flushes,
        1,
        "one flush cleaned the pool"
    );
    assert_eq!(quickmap.windows_in_use(0), 0b1111);
    let counters = machine.counters();
    let error = EnterError {
        cpu: 0,
        capacity: 4,
    };
    assert_eq!(quickmap.try_enter(page(8)).err(), Some(error));
    assert_eq!(
        quickmap.try_enter(page(5)).err(),
        Some(error),
        "held, so not reused"
    );
    assert_eq!(
        machine.counters(),
        counters,
        "no flush when every window is claimed"
    );
    drop(held);

    // Three held (after a second flush), the fourth free but dirty: a flush, and
    // success.
    let held: Vec<_> = (8..11)
        .map(|i| quickmap.try_map(page(i)).unwrap())
        .collect();
    drop(quickmap.try_map(page(11)).unwrap());
    let flushes = machine.counters().full_flushes;
    assert_eq!(flushes, 2);
    let last = quickmap
        .try_map(page(12))
        .expect("a dirty window is not in use");
    assert_eq!(machine.counters().full_flushes, flushes + 1);
    assert_eq!(quickmap.try_map(page(13)).err(), Some(error));
    drop((held, last));
}

/// An interrupt handler shares its CPU's windows with the thread it interrupted: it
/// gets the windows the thread left free, then the error, and returns with every
/// critical section closed (the simulated machine checks that at the handler's return).
fn an_interrupt_runs_out_where_its_thread_left_off<const N: usize, I: Invalidation>(
    machine: &SimMachine,
    quickmap: &SimQuickMap<'_, N, I>,
) {
    let cpu = 2;
    machine.on_cpu(cpu);
    let thread = machine.current_thread();
    let pages: Vec<SimPage> = (0..N + 2)
        .map(|i| SimPage::high_memory(machine, i))
        .collect();
    let error = EnterError { cpu, capacity: N };
    let mut held: Vec<_> = pages[..N - 1]
        .iter()
        .map(|page| quickmap.map(page))
        .collect();

    let outcome = machine.interrupt(|| {
        let last = quickmap
            .try_map(&pages[N - 1])
            .expect("the thread left one window");
        let refused = quickmap.try_enter(&pages[N]);
        let direct = quickmap.try_enter(&SimPage::new(1));
        drop(last);
        (refused, direct)
    });
    assert_eq!(outcome.0, Err(error));
    assert_eq!(outcome.1, Ok(VirtAddr(DIRECT_MAP_BASE + PAGE_SIZE)));
    assert_eq!(machine.critical_depth(thread), N as u32 - 1);
    assert_eq!(quickmap.windows_in_use(cpu), all::<N>() >> 1);

    held.push(quickmap.map(&pages[N - 1]));
    let refused = machine.interrupt(|| quickmap.try_map(&pages[N + 1]).err());
    assert_eq!(refused, Some(error), "the thread holds all");
    assert_eq!(machine.critical_depth(thread), N as u32);
    drop(held);
    assert_eq!(machine.critical_depth(thread), 0);
    assert_eq!(quickmap.windows_in_use(cpu), 0);
}

#[test]
fn an_interrupt_runs_out_where_its_thread_left_off_on_a_strict_instance() {
    {
        let machine = machine();
        an_interrupt_runs_out_where_its_thread_left_off(&machine, &machine.quickmap::<1>());
    }
    {
        let machine = machine();
        an_interrupt_runs_out_where_its_thread_left_off(&machine, &machine.quickmap::<4>());
    }
}

#[test]
fn an_interrupt_runs_out_where_its_thread_left_off_on_a_deferred_instance() {
    {
        let machine = machine();
        an_interrupt_runs_out_where_its_thread_left_off(
            &machine,
            &machine.quickmap_deferred::<1>(),
        );
    }
    {
        let machine = machine();
        an_interrupt_runs_out_where_its_thread_left_off(
            &machine,
            &machine.quickmap_deferred::<4>(),
        );
    }
}

/// An interrupt that arrives inside the thread's `enter`, after the claim and before
/// the entry is written: the window being entered is in use already, so with the
/// others held the handler's `try_enter` fails.
fn a_window_being_entered_is_in_use<I: Invalidation>() {
    let machine = machine();
    let quickmap: QuickMap<_, _, 2, I> = machine.quickmap_with(
        machine.quickmap_config(),
        machine.platform(),
        MidPairInterrupts(machine.mmu()),
    );
    let pages: Vec<SimPage> = (0..3).map(|i| SimPage::high_memory(&machine, i)).collect();
    let armed = Cell::new(false);
    let seen = Cell::new(None);
    let controller = |hook, phase| {
        if armed.get() && (hook, phase) == (Hook::SetPte, Phase::Before) {
            armed.set(false);
            seen.set(Some(machine.interrupt(|| quickmap.try_enter(&pages[2]))));
        }
    };
    with_interrupt_controller(&controller, || {
        let first = quickmap.map(&pages[0]);
        armed.set(true);
        let second = quickmap.map(&pages[1]);
        assert_eq!(
            seen.get(),
            Some(Err(EnterError {
                cpu: 0,
                capacity: 2
            }))
        );
        assert_eq!(
            machine.window_pte(second.va()),
            Some((pages[1].pa, MemoryAttribute::WriteBack))
        );
        drop((first, second));
    });
    assert_eq!(quickmap.windows_in_use(0), 0);
}

#[test]
fn a_window_being_entered_is_in_use_on_a_strict_instance() {
    a_window_being_entered_is_in_use::<Strict>();
}

#[test]
fn a_window_being_entered_is_in_use_on_a_deferred_instance() {
    a_window_being_entered_is_in_use::<Deferred>();
}

#[test]
fn enter_error_says_what_happened_and_what_to_do() {
    let error = EnterError {
        cpu: 3,
        capacity: 4,
    };
    assert_eq!(
        error.to_string(),
        "quickmap: no free window: CPU 3 already holds all 4 of its windows; remove a mapping of \
         this CPU and try again, or put the work off to a context that holds none"
    );
    assert_eq!(format!("{error:?}"), "EnterError { cpu: 3, capacity: 4 }");
    let copy = error;
    assert_eq!(copy.clone(), error);
    assert_ne!(EnterError { cpu: 2, ..error }, error);
    assert_ne!(
        EnterError {
            capacity: 2,
            ..error
        },
        error
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
    assert!(boxed.source().is_none());
    assert_eq!(boxed.downcast_ref::<EnterError>(), Some(&error));
}

/// What `enter` panics with is what `try_enter` returns, as a rule.
#[test]
fn enter_panics_where_try_enter_fails() {
    let machine = machine();
    let quickmap = machine.quickmap::<2>();
    let pages: Vec<SimPage> = (0..3).map(|i| SimPage::high_memory(&machine, i)).collect();
    let _held = (quickmap.map(&pages[0]), quickmap.map(&pages[1]));
    assert!(quickmap.try_enter(&pages[2]).is_err());
    for panic in [
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| quickmap.enter(&pages[2])))
            .map(drop),
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(quickmap.map(&pages[2]))
        })),
    ] {
        let message = *panic.expect_err("a panic").downcast::<String>().unwrap();
        assert!(
            message.starts_with(
                "quickmap: nesting beyond capacity: CPU 0 already holds all 2 of its windows"
            ),
            "{message}"
        );
    }
}

/// Bugs are not conditions: an unaligned page or one past the limit still panics.
#[test]
#[should_panic(expected = "quickmap: unaligned page")]
fn try_enter_panics_on_an_unaligned_page() {
    let machine = machine();
    let page = SimPage {
        pa: quickmap::PhysAddr(0x20008),
        attribute: MemoryAttribute::WriteBack,
    };
    let _ = machine.quickmap::<4>().try_enter(&page);
}

#[test]
#[should_panic(expected = "quickmap: page out of range")]
fn try_map_panics_on_a_page_out_of_range() {
    let machine = machine();
    let _ = machine.quickmap_deferred::<4>().try_map(&SimPage::new(256));
}

/// One step of a thread's run.
#[derive(Clone, Debug)]
enum Step {
    /// `try_enter` a page (an index into the high pages).
    Enter(usize),
    /// Remove the held mapping at this index (modulo how many are held).
    Remove(usize),
    /// An interrupt that tries to take this many windows, then gives them back.
    Interrupt(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..12usize).prop_map(Step::Enter),
            2 => any::<usize>().prop_map(Step::Remove),
            1 => (1..6usize).prop_map(Step::Interrupt),
        ],
        0..60,
    )
}

/// `try_enter` fails if and only if every window is in use, whatever came before.
fn fails_iff_full<I: Invalidation>(
    machine: &SimMachine,
    quickmap: &SimQuickMap<'_, 4, I>,
    run: &[Step],
) {
    let error = EnterError {
        cpu: 0,
        capacity: 4,
    };
    let pages: Vec<SimPage> = (0..25).map(|i| SimPage::high_memory(machine, i)).collect();
    let page = |i: usize| &pages[i];
    let mut held: Vec<VirtAddr> = Vec::new();
    for step in run {
        match *step {
            Step::Enter(i) => match quickmap.try_enter(page(i)) {
                Ok(va) => {
                    assert!(held.len() < 4, "a fifth window");
                    assert_eq!(machine.window_pte(va).map(|(pa, _)| pa), Some(page(i).pa));
                    held.push(va);
                }
                Err(refused) => {
                    assert_eq!(refused, error);
                    assert_eq!(held.len(), 4, "refused with a window free");
                }
            },
            Step::Remove(k) if !held.is_empty() => {
                let va = held.swap_remove(k % held.len());
                // SAFETY: entered by this thread and not used again.
                unsafe { quickmap.remove(va) };
            }
            Step::Remove(_) => {}
            Step::Interrupt(wanted) => machine.interrupt(|| {
                let free = 4 - held.len();
                let taken: Vec<_> = (0..wanted)
                    .map(|k| quickmap.try_map(page(20 + k)))
                    .collect();
                for (k, outcome) in taken.iter().enumerate() {
                    assert_eq!(
                        outcome.is_ok(),
                        k < free,
                        "window {k} of {wanted}, {free} free"
                    );
                }
            }),
        }
        assert_eq!(quickmap.windows_in_use(0).count_ones() as usize, held.len());
        assert_eq!(
            machine.critical_depth(machine.current_thread()) as usize,
            held.len()
        );
    }
    for va in held {
        // SAFETY: entered by this thread and not used again.
        unsafe { quickmap.remove(va) };
    }
}

proptest! {
    #[test]
    fn try_enter_fails_if_and_only_if_every_window_is_in_use(run in steps()) {
        let (strict, deferred) = (machine(), machine());
        fails_iff_full(&strict, &strict.quickmap::<4>(), &run);
        fails_iff_full(&deferred, &deferred.quickmap_deferred::<4>(), &run);
    }
}
