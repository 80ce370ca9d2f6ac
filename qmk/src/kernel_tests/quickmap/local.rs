//! Local mappings (Linux's `kmap_local_page`) on this kernel's scheduler: a thread
//! that holds them is preempted and sleeps, stays on its CPU, and finds its own pages
//! at slot addresses that other threads on the CPU use for theirs; the stress counts
//! preemptions and sleeps while mapped; a scheduler that skips the switch-in hook, or
//! lets a holder migrate, is caught; each rule panics with its name.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::quickmap_backend::KernelMmu;
use quickmap::{
    CpuLocalSlots, LocalMappings, LocalPlatform, LocalQuickMap, MemoryAttribute, Platform,
    PAGE_SIZE,
};
use spin::Once;

use super::{pattern_word, TestPage};
use crate::cpu::{self, current_cpu_index, MAX_CPUS};
use crate::kernel_test;
use crate::sched::thread::{current_thread, Thread};
use crate::sched::{self, SwitchHooks, SwitchWork};
use crate::vm::page::Wired;
use crate::vm::quick::{
    self, local_quickmap, qmk_local_enter_page, qmk_local_remove_page, qmk_local_switch_out,
    quickmap, QmkPlatform, LOCAL_SLOTS,
};

/// Words each check reads and writes: both ends and the middle of the page.
const CHECKED_OFFSETS: [usize; 3] = [0, PAGE_SIZE / 2, PAGE_SIZE - 8];

/// A small deterministic generator (xorshift).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A thread's pages, each with the generation of the pattern it holds.
struct OwnPages {
    pages: Vec<TestPage>,
    generations: Vec<u64>,
}

impl OwnPages {
    fn new(count: usize) -> OwnPages {
        OwnPages {
            pages: (0..count)
                .map(|_| TestPage::high(MemoryAttribute::WriteBack))
                .collect(),
            generations: alloc::vec![0; count],
        }
    }
}

/// Checks that `read` finds page `pa`'s pattern of `generation`, then writes the
/// next one with `write`; panics with `quickmap local integrity:` otherwise.
fn check_and_advance(
    who: &str,
    pa: quickmap::PhysAddr,
    generation: u64,
    read: impl Fn(usize) -> u64,
    write: impl Fn(usize, u64),
) {
    for offset in CHECKED_OFFSETS {
        let expected = pattern_word(pa, generation, offset);
        let found = read(offset);
        if found != expected {
            panic!(
                "quickmap local integrity: mismatch: {who}, page {pa} offset {offset:#x}: expected \
                 {expected:#018x}, found {found:#018x} (generation {generation})"
            );
        }
        write(offset, pattern_word(pa, generation + 1, offset));
    }
}

/// Panics unless the calling thread still runs on `home`, where it made its local
/// mappings.
#[track_caller]
fn assert_on(home: usize, who: &str) {
    let now = current_cpu_index();
    if now != home {
        panic!(
            "quickmap local integrity: {who} holds local mappings of CPU {home} but runs on CPU {now}"
        );
    }
}

/// One thread of a ping-pong pair: holds `LOCAL_SLOTS` local mappings (every slot)
/// of its own pages for `rounds` rounds, giving its CPU to its partner after each
/// (a yield, or a short sleep one round in 32) and checking, every time it runs
/// again, that each slot still reads its own page and that it is on its CPU.
fn ping_pong_thread<P: LocalPlatform<LOCAL_SLOTS>>(
    local: &LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>,
    name: &str,
    rounds: u64,
) {
    let mut own = OwnPages::new(LOCAL_SLOTS);
    let wired: Vec<Wired<'_>> = own.pages.iter().map(|p| p.page().wire()).collect();
    let mappings: Vec<_> = wired.iter().map(|page| local.map(page)).collect();
    let home = current_cpu_index();
    for (mapping, page) in mappings.iter().zip(&wired) {
        for offset in CHECKED_OFFSETS {
            mapping.write_u64(offset, pattern_word(page.page().phys_addr(), 0, offset));
        }
    }
    for round in 0..rounds {
        if round % 32 == 31 {
            sched::sleep(Duration::from_micros(50));
        } else {
            sched::yield_now();
        }
        assert_on(home, name);
        for (slot, (mapping, page)) in mappings.iter().zip(&wired).enumerate() {
            check_and_advance(
                name,
                page.page().phys_addr(),
                own.generations[slot],
                |offset| mapping.read_u64(offset),
                |offset, word| mapping.write_u64(offset, word),
            );
            own.generations[slot] += 1;
        }
    }
}

/// Switches of the CPU's threads while they held local mappings, and the rounds they
/// ran, over one ping-pong run.
struct PingPong {
    rounds: u64,
    holder_switches: Option<u64>,
}

/// On every CPU, two threads bound to it play ping-pong with all their local slots
/// mapped (the same slot addresses, different pages), `rounds` rounds each.
fn ping_pong_on_every_cpu<P: LocalPlatform<LOCAL_SLOTS> + Sync>(
    local: &'static LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>,
    rounds: u64,
) -> PingPong {
    #[cfg(feature = "stats")]
    let before = local.total_stats().switch_outs;
    let cpus = cpu::cpu_count();
    let handles: Vec<_> = (0..cpus)
        .flat_map(|cpu| {
            ["local-ping", "local-pong"].map(|name| {
                sched::spawn_pinned(name, cpu, move || ping_pong_thread(local, name, rounds))
            })
        })
        .collect();
    for handle in handles {
        handle.join();
    }
    PingPong {
        rounds: 2 * cpus as u64 * rounds,
        #[cfg(feature = "stats")]
        holder_switches: Some(local.total_stats().switch_outs - before),
        #[cfg(not(feature = "stats"))]
        holder_switches: None,
    }
}

/// Rounds per thread of the ping-pong: 2·10^5 rounds over all CPUs, for at least
/// 10^5 switches out of a holder (a round is at most one: a yield while the partner
/// sleeps switches nothing).
fn ping_pong_rounds() -> u64 {
    100_000u64.div_ceil(cpu::cpu_count() as u64)
}

kernel_test! {
    /// Two threads on each CPU hold local mappings of different pages at the same
    /// slots and give the CPU to each other (yields, and sleeps) ≥ 10^5 times in all
    /// while mapped: each always reads its own pages, on its own CPU.
    fn two_threads_share_local_slots_across_switches_and_sleeps() {
        let run = ping_pong_on_every_cpu(local_quickmap(), ping_pong_rounds());
        crate::println!(
            "qmk: local ping-pong: {} rounds on {} CPU(s), {} switches out of a thread holding \
             {LOCAL_SLOTS} local mappings, 0 mismatches",
            run.rounds,
            cpu::cpu_count(),
            run.holder_switches.map_or("(not counted)".into(), |n| alloc::format!("{n}"))
        );
        if let Some(switches) = run.holder_switches {
            assert!(switches >= 100_000, "only {switches} switches while mapped");
        }
    }
}

/// What one stress run counted.
#[derive(Default)]
struct StressCounters {
    pairs: AtomicU64,
    /// Pairs during which the thread was preempted (the scheduler's count of the
    /// thread went up between the map and the drop).
    preempted_while_mapped: AtomicU64,
    /// Sleeps taken while holding local mappings.
    sleeps_while_mapped: AtomicU64,
    /// Yields taken while holding local mappings.
    yields_while_mapped: AtomicU64,
    /// Threads that changed CPU between two pairs (migration is alive).
    moves_between_pairs: AtomicU64,
}

/// Local pairs per stress run, over all threads.
const STRESS_PAIRS: u64 = 1_000_000;

/// One stress thread: `pairs` times, map one or two of its pages locally, check and
/// advance their patterns (checking its CPU at every access), sometimes yield or sleep
/// while they are mapped, and drop them (in either order).
fn stress_thread<P: LocalPlatform<LOCAL_SLOTS>>(
    local: &LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>,
    index: usize,
    pairs: u64,
    counters: &StressCounters,
) {
    const PAGES: usize = 3;
    let mut own = OwnPages::new(PAGES);
    let wired: Vec<Wired<'_>> = own.pages.iter().map(|p| p.page().wire()).collect();
    for page in &wired {
        let mapping = local.map(page);
        for offset in CHECKED_OFFSETS {
            mapping.write_u64(offset, pattern_word(page.page().phys_addr(), 0, offset));
        }
    }
    let me = current_thread();
    let mut random = 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1);
    let mut last_cpu = current_cpu_index();
    let who = alloc::format!("stress thread {index}");
    for pair in 0..pairs {
        let roll = next_random(&mut random);
        let first = (roll % PAGES as u64) as usize;
        let second = (first + 1 + (roll >> 8) as usize % (PAGES - 1)) % PAGES;
        let both = roll & (1 << 20) != 0;
        let preemptions = me.preemptions();
        let a = local.map(&wired[first]);
        let home = current_cpu_index();
        if home != last_cpu {
            counters.moves_between_pairs.fetch_add(1, Ordering::Relaxed);
            last_cpu = home;
        }
        let b = both.then(|| local.map(&wired[second]));
        // Given up while mapped: a yield one pair in 64, a sleep one in 4096.
        if pair % 4096 == 4095 {
            sched::sleep(Duration::from_micros(100));
            counters.sleeps_while_mapped.fetch_add(1, Ordering::Relaxed);
        } else if roll.is_multiple_of(64) {
            sched::yield_now();
            counters.yields_while_mapped.fetch_add(1, Ordering::Relaxed);
        }
        for (slot, mapping) in [(first, Some(&a)), (second, b.as_ref())] {
            let Some(mapping) = mapping else { continue };
            assert_on(home, &who);
            check_and_advance(
                &who,
                wired[slot].page().phys_addr(),
                own.generations[slot],
                |offset| mapping.read_u64(offset),
                |offset, word| mapping.write_u64(offset, word),
            );
            own.generations[slot] += 1;
        }
        assert_on(home, &who);
        if roll & (1 << 21) != 0 {
            drop(a);
            drop(b);
        } else {
            drop(b);
            drop(a);
        }
        if me.preemptions() != preemptions {
            counters
                .preempted_while_mapped
                .fetch_add(1, Ordering::Relaxed);
        }
        counters.pairs.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(me.local_mappings().held(), 0);
    assert_eq!(
        sched::migrate_disable_count(),
        0,
        "the last drop enabled migration"
    );
}

/// Runs the stress over `local` with `2 * CPUs + 4` unbound threads while the timer
/// interrupt maps pinned windows on top.
fn run_stress<P: LocalPlatform<LOCAL_SLOTS> + Sync>(
    local: &'static LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>,
    pairs: u64,
) -> Arc<StressCounters> {
    let threads = 2 * cpu::cpu_count() + 4;
    let per_thread = pairs.div_ceil(threads as u64);
    let counters = Arc::new(StressCounters::default());
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let counters = counters.clone();
            sched::spawn("local-stress", move || {
                stress_thread(local, index, per_thread, &counters)
            })
        })
        .collect();
    for handle in handles {
        handle.join();
    }
    counters
}

/// The timer interrupt's pages (one per CPU) and what the ticks saw.
struct TickState {
    pages: Vec<TestPage>,
    generations: [AtomicU64; MAX_CPUS],
    /// Ticks that interrupted a thread holding local mappings.
    over_local: AtomicU64,
}

static TICK_STATE: Once<TickState> = Once::new();
static TICK_ARMED: AtomicBool = AtomicBool::new(false);

/// In the timer interrupt on every CPU: a pinned window of this CPU's page, checked
/// and advanced, on top of whatever the interrupted thread holds.
fn tick_maps_a_pinned_window() {
    let Some(state) = TICK_STATE
        .get()
        .filter(|_| TICK_ARMED.load(Ordering::Acquire))
    else {
        return;
    };
    let cpu = current_cpu_index();
    let thread = crate::sched::thread::current_thread_pointer();
    // SAFETY: the interrupted thread stays alive while its handler runs.
    if unsafe { thread.as_ref() }.is_some_and(|t| t.local_mappings().held() != 0) {
        state.over_local.fetch_add(1, Ordering::Relaxed);
    }
    let page = state.pages[cpu].page();
    let wired = page.wire();
    let mapping = quickmap().map(&wired);
    let generation = state.generations[cpu].load(Ordering::Relaxed);
    check_and_advance(
        "the timer interrupt",
        page.phys_addr(),
        generation,
        |offset| mapping.read_u64(offset),
        |offset, word| mapping.write_u64(offset, word),
    );
    state.generations[cpu].store(generation + 1, Ordering::Relaxed);
}

kernel_test! {
    /// 10^6 local pairs over 2·CPUs+4 unbound threads, with preemptions, yields and
    /// sleeps while mapped (each counted, each > 0), the CPU checked at every access,
    /// migration between pairs (2+ CPUs), and the timer interrupt mapping pinned
    /// windows on top of local mappings: no mismatch, every slot clear at the end.
    fn local_integrity_under_preemption_sleep_and_interrupts() {
        let cpus = cpu::cpu_count();
        let state = TICK_STATE.call_once(|| TickState {
            pages: (0..cpus).map(|_| TestPage::high(MemoryAttribute::WriteBack)).collect(),
            generations: [const { AtomicU64::new(0) }; MAX_CPUS],
            over_local: AtomicU64::new(0),
        });
        for (cpu, page) in state.pages.iter().enumerate() {
            let wired = page.page().wire();
            let mapping = quickmap().map(&wired);
            for offset in CHECKED_OFFSETS {
                let generation = state.generations[cpu].load(Ordering::Relaxed);
                mapping.write_u64(offset, pattern_word(page.page().phys_addr(), generation, offset));
            }
        }
        sched::set_tick_hook(Some(tick_maps_a_pinned_window));
        TICK_ARMED.store(true, Ordering::Release);
        let counters = run_stress(local_quickmap(), STRESS_PAIRS);
        TICK_ARMED.store(false, Ordering::Release);
        sched::set_tick_hook(None);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (pairs, preempted, sleeps, yields, moves) = (
            load(&counters.pairs),
            load(&counters.preempted_while_mapped),
            load(&counters.sleeps_while_mapped),
            load(&counters.yields_while_mapped),
            load(&counters.moves_between_pairs),
        );
        let over_local = load(&state.over_local);
        crate::println!(
            "qmk: local stress: {pairs} local pairs on {cpus} CPU(s), 0 mismatches, 0 CPU changes \
             while mapped; while mapped: {preempted} pairs preempted, {sleeps} sleeps, {yields} \
             yields; {moves} thread moves between pairs; {over_local} timer ticks mapped a pinned \
             window over local mappings"
        );
        assert!(pairs >= STRESS_PAIRS, "only {pairs} pairs ran");
        assert!(preempted > 0, "no pair was preempted while mapped");
        assert!(sleeps > 0, "no thread slept while mapped");
        assert!(over_local > 0, "no tick interrupted a holder of local mappings");
        if cpus > 1 {
            assert!(moves > 0, "threads never changed CPU between pairs: migration was not exercised");
        }
        #[cfg(feature = "stats")]
        {
            let stats = local_quickmap().total_stats();
            assert_eq!(stats.slot_maps, stats.slot_removes, "every slot given back");
            assert_eq!(stats.slots_saved, stats.slots_restored, "every saved slot restored");
        }
        assert_all_slots_clear(local_quickmap());
    }
}

/// Every local slot of every CPU has a clear entry.
fn assert_all_slots_clear<P: LocalPlatform<LOCAL_SLOTS>>(
    local: &LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>,
) {
    for cpu in 0..local.cpu_count() {
        for slot in 0..LOCAL_SLOTS {
            let va = local.layout().window_va(cpu, slot);
            assert_eq!(
                local.mmu().read_pte(va),
                0,
                "local slot {slot} of CPU {cpu} at {va} is still mapped"
            );
        }
    }
}

kernel_test! {
    /// A dropped local mapping's address faults (entry cleared and invalidated),
    /// and a thread holding only local mappings may sleep; the address stays its
    /// own across the sleep.
    fn a_local_mapping_survives_sleep_and_faults_after_drop() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let mapping = local_quickmap().map(&wired);
        let va = mapping.va();
        mapping.write_u64(8, 0x1234_5678);
        assert!(sched::migrate_disable_count() == 1, "the holder cannot migrate");
        sched::sleep(Duration::from_millis(2));
        assert_eq!(mapping.read_u64(8), 0x1234_5678);
        drop(mapping);
        assert_eq!(sched::migrate_disable_count(), 0);
        assert_eq!(current_thread().switch_work() & SwitchWork::LocalMappings.bit(), 0);
        super::assert_unreachable(va.0);
        // The raw API, for C callers: the same, in any order.
        let other = TestPage::high(MemoryAttribute::WriteBack);
        let other_wired = other.page().wire();
        let first = qmk_local_enter_page(wired.page());
        let second = qmk_local_enter_page(other_wired.page());
        // SAFETY: entered just above by this thread, removed once each.
        unsafe {
            qmk_local_remove_page(first);
            qmk_local_remove_page(second);
        }
        super::assert_unreachable(first);
        super::assert_unreachable(second);
    }
}

kernel_test! {
    /// Sleeping with a pinned window on top of local mappings is still refused,
    /// naming quickmap's rule.
    #[should_panic(expected = "quickmap: sleep while mapped")]
    fn sleep_with_a_pinned_window_over_local_mappings_panics() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let _local = local_quickmap().map(&wired);
        let _pinned = quickmap().map(&wired);
        sched::sleep(Duration::from_millis(1));
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: local mappings beyond capacity")]
    fn more_local_mappings_than_the_thread_holds_panics() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let _held: Vec<_> = (0..=LOCAL_SLOTS).map(|_| local_quickmap().map(&wired)).collect();
    }
}

kernel_test! {
    /// The raw API's remove of a slot the caller does not hold: another thread's
    /// (on the same CPU, so at an address that is a slot of the caller's CPU too).
    #[should_panic(expected = "quickmap: local remove by another thread")]
    fn local_remove_by_another_thread_panics() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let target = current_cpu_index();
        let maker = {
            sched::spawn_pinned("local-maker", target, move || {
                let wired = page.page().wire();
                let va = qmk_local_enter_page(wired.page());
                let remover = sched::spawn_pinned("local-remover", target, move || {
                    // SAFETY: deliberately breaks the contract: `va` is the maker's.
                    unsafe { qmk_local_remove_page(va) };
                });
                remover.join();
            })
        };
        maker.join();
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: thread exited holding a local mapping")]
    fn thread_exiting_with_a_local_mapping_panics() {
        let leaky = sched::spawn("local-leak", || {
            let page = TestPage::high(MemoryAttribute::WriteBack);
            let wired = page.page().wire();
            core::mem::forget(local_quickmap().map(&wired));
            core::mem::forget(wired);
            core::mem::forget(page);
        });
        leaky.join();
    }
}

/// The page the tick below maps, allocated before the tick hook is set (an
/// interrupt handler must not allocate: the interrupted thread may hold the
/// allocator's lock).
static TICK_PAGE: Once<TestPage> = Once::new();

/// A tick hook that makes a local mapping: refused.
fn local_mapping_in_a_tick() {
    if let Some(page) = TICK_PAGE.get() {
        let wired = page.page().wire();
        drop(local_quickmap().map(&wired));
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: local mapping in an interrupt handler: use map")]
    fn local_mapping_in_an_interrupt_handler_panics() {
        TICK_PAGE.call_once(|| TestPage::high(MemoryAttribute::WriteBack));
        sched::set_tick_hook(Some(local_mapping_in_a_tick));
        sched::sleep(Duration::from_millis(50));
    }
}

/// A switch-in hook that does nothing: a scheduler that forgets to put a thread's
/// local slots back.
fn skip_switch_in(_thread: &Thread) {}

kernel_test! {
    /// Teeth: with the switch-in hook skipped, the ping-pong's first access after a
    /// switch faults on its own slot, which the page-fault handler reports with
    /// quickmap's rule.
    #[should_panic(expected = "quickmap: local slot not restored")]
    fn ping_pong_catches_a_scheduler_that_skips_switch_in() {
        sched::set_switch_hooks(
            SwitchWork::LocalMappings,
            Some(SwitchHooks { switch_out: qmk_local_switch_out, switch_in: skip_switch_in }),
        );
        ping_pong_on_every_cpu(local_quickmap(), 1000);
    }
}

/// A platform whose scheduler lets a thread that holds local mappings migrate: its
/// `migrate_disable` asks for the switch hooks but does not bind the thread.
#[derive(Clone, Copy)]
struct MigratesAnyway;

// SAFETY: test-only; forwards to qmk's platform.
unsafe impl Platform for MigratesAnyway {
    fn current_cpu(&self) -> usize {
        QmkPlatform.current_cpu()
    }
    fn critical_enter(&self) {
        QmkPlatform.critical_enter()
    }
    fn critical_exit(&self) {
        QmkPlatform.critical_exit()
    }
}

// SAFETY: test-only and deliberately broken (promise 2 of `LocalPlatform`), to show
// the tests notice.
unsafe impl LocalPlatform<LOCAL_SLOTS> for MigratesAnyway {
    fn local_mappings(&self) -> Option<&LocalMappings<LOCAL_SLOTS>> {
        quick::running_threads_local_mappings()
    }
    fn migrate_disable(&self) {
        sched::add_switch_work(SwitchWork::LocalMappings);
    }
    fn migrate_enable(&self) {
        sched::remove_switch_work(SwitchWork::LocalMappings);
    }
}

static UNBOUND_SLOTS: [CpuLocalSlots; MAX_CPUS] = [const { CpuLocalSlots::new() }; MAX_CPUS];
static UNBOUND: Once<LocalQuickMap<MigratesAnyway, KernelMmu, LOCAL_SLOTS>> = Once::new();

fn unbound_switch_out(thread: &Thread) {
    if let Some(local) = UNBOUND.get() {
        local.switch_out(thread.local_mappings());
    }
}

fn unbound_switch_in(thread: &Thread) {
    if let Some(local) = UNBOUND.get() {
        local.switch_in(thread.local_mappings());
    }
}

kernel_test! {
    /// Teeth: over a scheduler that lets holders migrate, the stress finds a thread
    /// on another CPU than its slots (quickmap's check at switch-in, or the test's at
    /// the next access).
    #[should_panic(expected = "quickmap")]
    fn stress_catches_a_scheduler_that_lets_a_holder_migrate() {
        if cpu::cpu_count() < 2 {
            crate::test_harness::skip("needs 2 CPUs: on one, nothing can migrate");
            return;
        }
        let region = crate::arch::paging::WINDOW_REGION.start
            + 14 * crate::arch::paging::LARGE_PAGE_SIZE;
        let slots = &UNBOUND_SLOTS[..cpu::cpu_count()];
        let local = UNBOUND.call_once(|| quick::build_local(MigratesAnyway, region, slots).unwrap());
        sched::set_switch_hooks(
            SwitchWork::LocalMappings,
            Some(SwitchHooks { switch_out: unbound_switch_out, switch_in: unbound_switch_in }),
        );
        run_stress(local, STRESS_PAIRS);
    }
}
