//! Property test: random programs of enter / access / remove across CPUs, threads,
//! windows and pages, with preemption, migration and nested interrupts, checked against
//! a reference model of physical memory.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quickmap::sim::{SimConfig, SimMachine, SimPage, ThreadId, WINDOW_BASE};
use quickmap::{MemoryAttribute, Mmu, Platform, QuickMap, VirtAddr, PAGE_SIZE};

const CPUS: usize = 3;
const WINDOWS: usize = 4;
/// The CPUs' first threads, their idle threads, and two more threads spawned on CPU 0.
const THREADS: usize = 2 * CPUS + 2;

#[derive(Clone, Debug)]
enum Op {
    /// Let `cpu` execute next.
    OnCpu(usize),
    /// Preempt the running thread of the thread's CPU in favour of `thread`.
    SwitchTo(usize),
    /// The scheduler moves `thread` to `cpu`.
    Migrate(usize, usize),
    /// The current thread enters page `page`.
    Enter(usize),
    /// The current thread writes `len` bytes of `byte` at `offset` through its `n`-th mapping.
    Write {
        n: usize,
        offset: usize,
        len: usize,
        byte: u8,
    },
    /// The current thread checks its `n`-th mapping's page against the model.
    Verify(usize),
    /// The current thread removes its `n`-th mapping (any order).
    Remove(usize),
    /// An interrupt on the executing CPU maps these pages at once, checks each, writes a
    /// byte to each, and releases them in the given order.
    Interrupt {
        pages: Vec<usize>,
        release_order: Vec<usize>,
        byte: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..CPUS).prop_map(Op::OnCpu),
        1 => (0..THREADS).prop_map(Op::SwitchTo),
        2 => (prop_oneof![0..CPUS, 2 * CPUS..THREADS], 0..CPUS).prop_map(|(t, c)| Op::Migrate(t, c)),
        4 => (0..PAGES).prop_map(Op::Enter),
        4 => (0..8usize, 0..PAGE_SIZE, 1..64usize, any::<u8>())
            .prop_map(|(n, offset, len, byte)| Op::Write { n, offset, len: len.min(PAGE_SIZE - offset), byte }),
        2 => (0..8usize).prop_map(Op::Verify),
        4 => (0..8usize).prop_map(Op::Remove),
        1 => (proptest::collection::vec(0..PAGES, 1..=3), any::<u8>()).prop_flat_map(|(pages, byte)| {
            let n = pages.len();
            (Just(pages), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), Just(byte))
        })
        .prop_map(|(pages, release_order, byte)| Op::Interrupt { pages, release_order, byte }),
    ]
}

/// 8 direct-mapped pages, 16 high ones; page 2 is write-combining (takes a window
/// although it is in the direct map).
const PAGES: usize = 24;

fn page(index: usize) -> SimPage {
    let page = SimPage::new(index);
    if index == 2 {
        SimPage {
            attribute: MemoryAttribute::WriteCombining,
            ..page
        }
    } else {
        page
    }
}

fn is_window(va: VirtAddr) -> bool {
    va.0 >= WINDOW_BASE
}

/// A machine with two extra threads on CPU 0, and every page holding its initial pattern.
fn machine_and_model() -> (SimMachine, Vec<Vec<u8>>) {
    let machine = SimMachine::new(SimConfig {
        cpus: CPUS,
        phys_pages: PAGES,
        direct_map_pages: 8,
    });
    for _ in 2 * CPUS..THREADS {
        machine.spawn(0);
    }
    let model: Vec<Vec<u8>> = (0..PAGES).map(|p| common::pattern(p, 0)).collect();
    for (p, content) in model.iter().enumerate() {
        machine.phys_write(page(p).pa, content);
    }
    (machine, model)
}

/// What to break, to show the property test notices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Breakage {
    Nothing,
    SkipInvalidation,
    DoNotPin,
}

fn run(ops: &[Op], breakage: Breakage) -> Result<(), TestCaseError> {
    let (machine, model) = machine_and_model();
    let config = machine.quickmap_config();
    match breakage {
        Breakage::Nothing => run_on(&machine, model, machine.quickmap::<WINDOWS>(), ops),
        Breakage::SkipInvalidation => {
            let quickmap = machine.quickmap_with(
                config,
                machine.platform(),
                common::ForgetsInvalidation(machine.mmu()),
            );
            run_on(&machine, model, quickmap, ops)
        }
        Breakage::DoNotPin => {
            let quickmap = machine.quickmap_with(
                config,
                common::DoesNotPin(machine.platform()),
                machine.mmu(),
            );
            run_on(&machine, model, quickmap, ops)
        }
    }
}

fn run_on<P: Platform, M: Mmu>(
    machine: &SimMachine,
    mut model: Vec<Vec<u8>>,
    quickmap: QuickMap<P, M, WINDOWS>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let model = &mut model;
    let pages: Vec<SimPage> = (0..PAGES).map(page).collect();
    // Each thread's live mappings, in the order made: (address, page index).
    let mut held: HashMap<ThreadId, Vec<(VirtAddr, usize)>> = HashMap::new();
    let held = &mut held;

    let verify = |model: &Vec<Vec<u8>>, va: VirtAddr, p: usize| -> Result<(), TestCaseError> {
        let mut seen = vec![0u8; PAGE_SIZE];
        // SAFETY: `va` is a live mapping of page `p` held by the executing context.
        unsafe { quickmap.mmu().read_bytes(va, &mut seen) };
        prop_assert!(
            seen == model[p],
            "page {} read through {} differs from the model",
            p,
            va
        );
        Ok(())
    };

    for op in ops {
        let current = machine.current_thread();
        let mine = held.entry(current).or_default();
        match op.clone() {
            Op::OnCpu(cpu) => machine.on_cpu(cpu),
            Op::SwitchTo(t) => {
                let thread = ThreadId(t);
                let cpu = machine.cpu_of(thread);
                machine.on_cpu(cpu);
                let running = machine.current_thread();
                let refused = machine.switch_to(thread).is_err();
                let pinned = running != thread
                    && held
                        .get(&running)
                        .is_some_and(|h| h.iter().any(|&(va, _)| is_window(va)));
                prop_assert_eq!(refused, pinned, "switch to thread {} on CPU {}", t, cpu);
            }
            Op::Migrate(t, cpu) => {
                let thread = ThreadId(t);
                machine.on_cpu(cpu);
                let displaced = machine.current_thread();
                let pinned = {
                    let holds = |th: ThreadId| {
                        held.get(&th)
                            .is_some_and(|h| h.iter().any(|&(va, _)| is_window(va)))
                    };
                    holds(thread) || (displaced != thread && holds(displaced))
                };
                let refused = machine.migrate(thread, cpu).is_err();
                prop_assert_eq!(refused, pinned, "migrate thread {} to CPU {}", t, cpu);
            }
            Op::Enter(p) => {
                let windows_here = quickmap
                    .windows_in_use(machine.executing_cpu())
                    .count_ones() as usize;
                if windows_here < WINDOWS {
                    let va = quickmap.enter(&pages[p]);
                    mine.push((va, p));
                    verify(model, va, p)?;
                }
            }
            Op::Write {
                n,
                offset,
                len,
                byte,
            } => {
                if !mine.is_empty() {
                    let (va, p) = mine[n % mine.len()];
                    let bytes = vec![byte; len];
                    // SAFETY: a live mapping of the current thread; inside the page.
                    unsafe { quickmap.mmu().write_bytes(va.add(offset), &bytes) };
                    model[p][offset..offset + len].copy_from_slice(&bytes);
                }
            }
            Op::Verify(n) => {
                if !mine.is_empty() {
                    let (va, p) = mine[n % mine.len()];
                    verify(model, va, p)?;
                }
            }
            Op::Remove(n) => {
                if !mine.is_empty() {
                    let (va, _) = mine.remove(n % mine.len());
                    // SAFETY: the current thread's own live mapping, removed once.
                    unsafe { quickmap.remove(va) };
                }
            }
            Op::Interrupt {
                pages: wanted,
                release_order,
                byte,
            } => {
                let cpu = machine.executing_cpu();
                let free = WINDOWS - quickmap.windows_in_use(cpu).count_ones() as usize;
                let takes_window = |p: usize| p >= 8 || p == 2;
                if wanted.iter().filter(|&&p| takes_window(p)).count() <= free {
                    machine.interrupt(|| -> Result<(), TestCaseError> {
                        let mut mappings: Vec<Option<_>> = wanted
                            .iter()
                            .map(|&p| Some(quickmap.map(&pages[p])))
                            .collect();
                        for (mapping, &p) in mappings.iter().zip(&wanted) {
                            let mapping = mapping.as_ref().unwrap();
                            prop_assert!(
                                mapping.compare(0, &model[p]).is_ok(),
                                "interrupt sees page {} wrong",
                                p
                            );
                            mapping.write(p % PAGE_SIZE, &[byte]);
                            model[p][p % PAGE_SIZE] = byte;
                        }
                        for i in release_order {
                            mappings[i] = None;
                        }
                        Ok(())
                    })?;
                    prop_assert_eq!(
                        quickmap.windows_in_use(cpu).count_ones() as usize,
                        WINDOWS - free,
                        "interrupt gave back its windows"
                    );
                }
            }
        }
    }

    // Every thread removes what it still holds: first the threads that hold windows (each
    // is pinned to, and running on, its CPU), then those holding only direct-map
    // addresses (which pin nothing, so they may have been preempted meanwhile).
    let mut threads: Vec<ThreadId> = held.keys().copied().collect();
    threads.sort_by_key(|&t| (!held[&t].iter().any(|&(va, _)| is_window(va)), t.0));
    for thread in threads {
        let mappings = held.get_mut(&thread).unwrap();
        if mappings.is_empty() {
            continue;
        }
        machine
            .switch_to(thread)
            .expect("a thread with windows is the one running on its CPU");
        for (va, p) in mappings.drain(..) {
            verify(model, va, p)?;
            // SAFETY: the thread's own live mapping.
            unsafe { quickmap.remove(va) };
        }
    }
    for cpu in 0..CPUS {
        prop_assert_eq!(
            quickmap.windows_in_use(cpu),
            0,
            "CPU {} has windows in use at the end",
            cpu
        );
        for slot in 0..WINDOWS {
            prop_assert_eq!(
                machine.window_pte(quickmap.layout().window_va(cpu, slot)),
                None
            );
        }
    }
    for thread in 0..THREADS {
        prop_assert_eq!(machine.critical_depth(ThreadId(thread)), 0);
    }
    for (p, expected) in model.iter().enumerate() {
        prop_assert!(
            &common::phys_page(machine, pages[p].pa) == expected,
            "physical page {} differs from the model",
            p
        );
    }
    let stats = quickmap.total_stats();
    prop_assert_eq!(
        stats.window_maps,
        stats.invalidations,
        "one invalidation per window pair"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_match_the_memory_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops, Breakage::Nothing)?;
    }
}

/// The same programs must catch a backend that skips invalidations and a platform that
/// does not pin: the property test has teeth.
#[test]
fn random_programs_catch_broken_backends() {
    for breakage in [Breakage::SkipInvalidation, Breakage::DoNotPin] {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&proptest::collection::vec(op(), 1..120), |ops| {
            run(&ops, breakage)
        });
        assert!(outcome.is_err(), "a broken backend went unnoticed");
    }
}
