//! The scheduler: preemption, migration, sleep, join, wait/wake, and a
//! stress test for lost wake-ups.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::smp::wait_for;
use crate::arch::clock;
use crate::cpu::{self, MAX_CPUS};
use crate::kernel_test;
use crate::sched::{self, WaitQueue};

/// Busy-waits `microseconds` without yielding.
fn spin_for_us(microseconds: u64) {
    clock::delay_us(microseconds);
}

kernel_test! {
    /// A thread that never yields is preempted: a second thread pinned to
    /// the same CPU makes progress while the first spins.
    fn thread_that_never_yields_is_preempted() {
        static STOP: AtomicBool = AtomicBool::new(false);
        static HOG_SPINS: AtomicU64 = AtomicU64::new(0);
        static WORKER_STEPS: AtomicU64 = AtomicU64::new(0);
        STOP.store(false, Ordering::Release);
        let target = cpu::cpu_count() - 1;
        let hog = sched::spawn_pinned("hog", target, || {
            while !STOP.load(Ordering::Acquire) {
                HOG_SPINS.fetch_add(1, Ordering::Relaxed);
            }
        });
        let worker = sched::spawn_pinned("worker", target, || {
            while !STOP.load(Ordering::Acquire) {
                WORKER_STEPS.fetch_add(1, Ordering::Relaxed);
            }
        });
        let deadline = clock::read() + 5 * clock::hz();
        while HOG_SPINS.load(Ordering::Relaxed) < 1000 || WORKER_STEPS.load(Ordering::Relaxed) < 1000 {
            assert!(
                clock::read() < deadline,
                "no preemption: after 5 s on CPU {target} the hog spun {} times and the worker stepped {} times",
                HOG_SPINS.load(Ordering::Relaxed),
                WORKER_STEPS.load(Ordering::Relaxed)
            );
            sched::sleep(Duration::from_millis(10));
        }
        STOP.store(true, Ordering::Release);
        hog.join();
        worker.join();
    }
}

kernel_test! {
    /// Migration is real: a long busy thread, competing with more busy
    /// threads than there are CPUs, observes itself on two or more CPUs.
    fn busy_thread_migrates_between_cpus() {
        let count = cpu::cpu_count();
        if count < 2 {
            crate::println!("qmk: note: migration needs 2 CPUs; nothing to check on 1");
            return;
        }
        static STOP: AtomicBool = AtomicBool::new(false);
        static SEEN: AtomicU64 = AtomicU64::new(0);
        STOP.store(false, Ordering::Release);
        let observer = sched::spawn("observer", || {
            let deadline = clock::read() + 10 * clock::hz();
            while SEEN.load(Ordering::Relaxed).count_ones() < 2 && clock::read() < deadline {
                SEEN.fetch_or(1 << cpu::current_cpu_index(), Ordering::Relaxed);
            }
        });
        let competitors: Vec<_> = (0..count)
            .map(|_| {
                sched::spawn("competitor", || {
                    while !STOP.load(Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                })
            })
            .collect();
        observer.join();
        STOP.store(true, Ordering::Release);
        for competitor in competitors {
            competitor.join();
        }
        let seen = SEEN.load(Ordering::Relaxed);
        assert!(
            seen.count_ones() >= 2,
            "the busy thread ran only on CPUs {seen:#b} in 10 s of competition on {count} CPUs"
        );
    }
}

kernel_test! {
    /// `sleep` lasts at least the duration asked, and not much longer.
    fn sleep_lasts_its_duration() {
        let start = clock::read();
        sched::sleep(Duration::from_millis(30));
        let elapsed_us = (clock::read() - start) * 1_000_000 / clock::hz();
        assert!(elapsed_us >= 30_000, "slept {elapsed_us} µs, asked for 30 ms");
        assert!(elapsed_us < 2_000_000, "slept {elapsed_us} µs, asked for 30 ms");
    }
}

kernel_test! {
    /// `join` waits for the thread and returns its result; `yield_now`
    /// lets another thread run.
    fn join_returns_the_result() {
        let handles: Vec<_> = (0..8u64)
            .map(|value| {
                sched::spawn("square", move || {
                    sched::yield_now();
                    value * value
                })
            })
            .collect();
        let results: Vec<u64> = handles.into_iter().map(|handle| handle.join()).collect();
        assert_eq!(results, [0, 1, 4, 9, 16, 25, 36, 49]);
    }
}

kernel_test! {
    /// The tick hook runs on every CPU.
    fn tick_hook_runs_on_every_cpu() {
        static HOOK_RUNS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
        fn count_tick() {
            HOOK_RUNS[cpu::current_cpu_index()].fetch_add(1, Ordering::Relaxed);
        }
        sched::set_tick_hook(Some(count_tick));
        wait_for("three ticks on every CPU", 5, || {
            HOOK_RUNS[..cpu::cpu_count()]
                .iter()
                .all(|runs| runs.load(Ordering::Relaxed) >= 3)
        });
        sched::set_tick_hook(None);
    }
}

kernel_test! {
    /// Clearing the tick hook returns only once no CPU is still inside it, so
    /// the caller may inspect what the hook touched. The hook spends half a
    /// tick inside; without the wait, some CPU is caught inside it.
    fn clearing_the_tick_hook_waits_for_every_cpu_to_leave_it() {
        static INSIDE: AtomicU64 = AtomicU64::new(0);
        fn slow_hook() {
            INSIDE.fetch_add(1, Ordering::AcqRel);
            let until = clock::read() + clock::hz() / 1_000_000 * sched::TICK_PERIOD_US / 2;
            while clock::read() < until {
                core::hint::spin_loop();
            }
            INSIDE.fetch_sub(1, Ordering::AcqRel);
        }
        if cpu::cpu_count() < 2 {
            crate::test_harness::skip("needs 2 CPUs: on one, the caller is never inside the hook");
            return;
        }
        for round in 0..20 {
            sched::set_tick_hook(Some(slow_hook));
            sched::sleep(Duration::from_micros(3 * sched::TICK_PERIOD_US));
            sched::set_tick_hook(None);
            let inside = INSIDE.load(Ordering::Acquire);
            assert_eq!(inside, 0, "round {round}: {inside} CPU(s) still inside the tick hook after it was cleared");
        }
    }
}

/// A turn counter two threads pass back and forth through a wait queue.
struct PingPong {
    turn: AtomicU64,
    queue: WaitQueue,
}

/// A small deterministic generator (xorshift) for the stress test.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

kernel_test! {
    /// Many threads that sleep, yield, spawn and join children, and pass a
    /// turn back and forth through wait queues: every one finishes (no
    /// wake-up is lost) within the deadline.
    fn stress_sleep_join_wait_wake() {
        const PAIRS: usize = 12;
        const ROUNDS: u64 = 16;
        static FINISHED: AtomicU64 = AtomicU64::new(0);
        FINISHED.store(0, Ordering::Release);
        let pairs: Vec<_> = (0..PAIRS)
            .map(|_| {
                alloc::sync::Arc::new(PingPong {
                    turn: AtomicU64::new(0),
                    queue: WaitQueue::new(),
                })
            })
            .collect();
        let mut handles = Vec::new();
        for (pair_index, pair) in pairs.iter().enumerate() {
            for side in 0..2u64 {
                let pair = pair.clone();
                handles.push(sched::spawn("stress", move || {
                    let mut random = 0x9e37_79b9_7f4a_7c15 ^ (pair_index as u64 * 2 + side + 1);
                    for round in 0..ROUNDS {
                        let my_turn = round * 2 + side;
                        pair.queue
                            .wait_until(|| pair.turn.load(Ordering::Acquire) == my_turn);
                        pair.turn.store(my_turn + 1, Ordering::Release);
                        pair.queue.wake_all();
                        match next_random(&mut random) % 4 {
                            0 => sched::sleep(Duration::from_micros(next_random(&mut random) % 3000)),
                            1 => sched::yield_now(),
                            2 => {
                                let child = sched::spawn("stress-child", move || round + 1);
                                assert_eq!(child.join(), round + 1);
                            }
                            _ => spin_for_us(200),
                        }
                    }
                    FINISHED.fetch_add(1, Ordering::AcqRel);
                }));
            }
        }
        let total = (PAIRS * 2) as u64;
        let deadline = clock::read() + 60 * clock::hz();
        while FINISHED.load(Ordering::Acquire) < total {
            assert!(
                clock::read() < deadline,
                "stress: only {} of {total} threads finished within 60 s: a lost wake-up?",
                FINISHED.load(Ordering::Acquire)
            );
            sched::sleep(Duration::from_millis(10));
        }
        for handle in handles {
            handle.join();
        }
    }
}
