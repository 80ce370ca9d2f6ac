//! Point 6, the feature `sim`: the simulated machine running the FreeBSD context policy.
//! The man page's rules, word for word: no quick mapping under a spin mutex or in
//! primary interrupt context; an interrupt thread is a thread, so it may.

#[macro_use]
mod common;

use bounce_client::bounce::BounceMap;
use common::assert_rule;
use quickmap::sim::{FreeBsdPolicy, SimConfig, SimMachine, SimPage};
use quickmap::{ContextPolicy, Platform, Strict};

#[test]
fn the_freebsd_policy_refuses_spin_locks_and_interrupt_filters_at_the_callers_line() {
    let machine = SimMachine::new(SimConfig::default());
    let platform = machine.platform_with_policy::<FreeBsdPolicy>();
    let quickmap = machine.quickmap_with::<_, _, 4, Strict>(
        machine.quickmap_config(),
        platform,
        machine.mmu(),
    );
    assert_eq!(
        <quickmap::sim::SimPlatform<'_, FreeBsdPolicy> as Platform>::CONTEXT_POLICY,
        ContextPolicy::FreeBsd
    );
    let pages = [SimPage::high_memory(&machine, 0)];
    let map = BounceMap::new(&pages, 4).unwrap();

    // A thread without spin locks: allowed.
    map.sync_prewrite(&quickmap, b"thrd");

    // Under a spin lock: refused, at this line (through the bounce code).
    machine.set_spin_locks_held(1);
    let (caught, line) = catch!(map.sync_prewrite(&quickmap, b"spin"));
    let remedy = "map before taking the lock or after releasing it";
    assert_rule(&caught, "called under a spin lock", file!(), line, remedy);
    machine.set_spin_locks_held(0);

    // In a primary interrupt handler: refused.
    let (caught, line) = catch!(machine.interrupt(|| map.sync_prewrite(&quickmap, b"filt")));
    let remedy = "map from the interrupt's thread instead";
    assert_rule(
        &caught,
        "called in primary interrupt context",
        file!(),
        line,
        remedy,
    );

    // The interrupt's thread: a thread, so allowed.
    let ithread = machine.spawn(0);
    machine.switch_to(ithread).unwrap();
    map.sync_prewrite(&quickmap, b"ithd");
    let mut back = [0u8; 4];
    machine.phys_read(pages[0].pa, &mut back);
    assert_eq!(&back, b"ithd");
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(machine.critical_depth(ithread), 0);
}

#[test]
fn the_default_policy_allows_both() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let pages = [SimPage::high_memory(&machine, 0)];
    let map = BounceMap::new(&pages, 4).unwrap();
    machine.set_spin_locks_held(1);
    map.sync_prewrite(&quickmap, b"spin");
    machine.set_spin_locks_held(0);
    machine.interrupt(|| map.sync_prewrite(&quickmap, b"filt"));
    let mut back = [0u8; 4];
    machine.phys_read(pages[0].pa, &mut back);
    assert_eq!(&back, b"filt");
}
