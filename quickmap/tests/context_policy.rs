//! Both context policies on the simulated machine: the same programs under the default
//! `Anywhere` and under `FreeBsd`, whose two rules fire, by name, where the man page
//! forbids the call, and nowhere else.

mod common;

use common::{pattern, phys_page};
use quickmap::sim::{
    AnywherePolicy, FreeBsdPolicy, SimConfig, SimContextPolicy, SimMachine, SimMmu, SimPage,
    SimPlatform,
};
use quickmap::{ContextPolicy, Platform, QuickMap, Strict};

type SimQuickMap<'m, C> = QuickMap<SimPlatform<'m, C>, SimMmu<'m>, 4, Strict>;

fn quickmap_with<C: SimContextPolicy>(machine: &SimMachine) -> SimQuickMap<'_, C> {
    machine.quickmap_with(
        machine.quickmap_config(),
        machine.platform_with_policy::<C>(),
        machine.mmu(),
    )
}

fn machine() -> SimMachine {
    SimMachine::new(SimConfig::default())
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let error =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    match error.downcast::<String>() {
        Ok(message) => *message,
        Err(error) => error.downcast::<&str>().unwrap().to_string(),
    }
}

const SPIN_LOCK_RULE: &str = "quickmap: called under a spin lock";
const INTERRUPT_RULE: &str = "quickmap: called in primary interrupt context";

#[test]
fn the_platform_reports_the_policy_it_was_made_with() {
    let machine = machine();
    assert_eq!(
        <SimPlatform<'_> as Platform>::CONTEXT_POLICY,
        ContextPolicy::Anywhere
    );
    assert_eq!(
        <SimPlatform<'_, FreeBsdPolicy> as Platform>::CONTEXT_POLICY,
        ContextPolicy::FreeBsd
    );
    // `platform()` is the default policy's.
    let _: SimPlatform<'_, AnywherePolicy> = machine.platform();
}

/// What the man page allows: thread context, sleep locks at most, several mappings at
/// once, the page work, on any CPU, while another CPU holds a spin lock;
/// [`check_legitimate_program_results`] checks what it wrote.
fn legitimate_program<C: SimContextPolicy>(machine: &SimMachine) {
    let quickmap = quickmap_with::<C>(machine);
    let (a, b, low) = (
        SimPage::high_memory(machine, 0),
        SimPage::high_memory(machine, 1),
        SimPage::new(2), // direct-mapped
    );
    // Another CPU holds a spin lock: not this context's.
    machine.on_cpu(1);
    machine.set_spin_locks_held(1);
    machine.on_cpu(0);
    {
        let (first, second) = (quickmap.map(&a), quickmap.map(&b));
        first.write(0, &pattern(0, 1));
        second.write(0, &pattern(1, 1));
        quickmap.map(&low).write(0, &pattern(2, 1));
    }
    quickmap.copy_page(&a, &low);
    quickmap.zero_page(&a);
    let va = quickmap.try_enter(&b).unwrap();
    // SAFETY: `va` came from `try_enter` in this context and is not used again.
    unsafe { quickmap.remove(va) };
    // An interrupt thread is a thread: the handler hands the work to one.
    machine.on_cpu(2);
    let ithread = machine.spawn(2);
    let wanted = machine.interrupt(|| 3usize);
    machine.switch_to(ithread).unwrap();
    quickmap
        .map(&SimPage::high_memory(machine, wanted))
        .write(0, &pattern(3, 1));
    machine.on_cpu(1);
    machine.set_spin_locks_held(0);
    quickmap.map(&b).write_u64(8, 42); // the lock is gone: CPU 1 may map too
    for cpu in 0..machine.config().cpus {
        assert_eq!(quickmap.windows_in_use(cpu), 0);
    }
}

fn check_legitimate_program_results(machine: &SimMachine) {
    let page = |i| SimPage::high_memory(machine, i).pa;
    assert!(phys_page(machine, page(0)).iter().all(|&b| b == 0));
    let mut b = pattern(1, 1);
    b[8..16].copy_from_slice(&42u64.to_ne_bytes());
    assert_eq!(phys_page(machine, page(1)), b);
    assert_eq!(phys_page(machine, SimPage::new(2).pa), pattern(0, 1));
    assert_eq!(phys_page(machine, page(3)), pattern(3, 1));
}

#[test]
fn legitimate_use_passes_under_the_freebsd_policy() {
    let machine = machine();
    legitimate_program::<FreeBsdPolicy>(&machine);
    check_legitimate_program_results(&machine);
}

#[test]
fn legitimate_use_passes_under_the_default_policy() {
    let machine = machine();
    legitimate_program::<AnywherePolicy>(&machine);
    check_legitimate_program_results(&machine);
}

/// What only the default policy allows: a spin lock held, and a primary interrupt
/// handler, each mapping a window page and a direct-mapped one, and doing page work.
fn forbidden_program<C: SimContextPolicy>(machine: &SimMachine, spin_lock: bool) {
    let quickmap = quickmap_with::<C>(machine);
    let (high, low) = (SimPage::high_memory(machine, 0), SimPage::new(1));
    let work = || {
        quickmap.map(&high).write_u64(0, 1);
        quickmap.map(&low).write_u64(0, 2);
        quickmap.zero_page(&high);
    };
    if spin_lock {
        machine.set_spin_locks_held(1);
        work();
        machine.set_spin_locks_held(0);
    } else {
        machine.interrupt(work);
    }
}

#[test]
fn the_default_policy_allows_what_freebsds_forbids() {
    let machine = machine();
    forbidden_program::<AnywherePolicy>(&machine, true);
    forbidden_program::<AnywherePolicy>(&machine, false);
}

#[test]
fn under_a_spin_lock_the_freebsd_policy_names_the_rule() {
    let machine = machine();
    let message = panic_of(|| forbidden_program::<FreeBsdPolicy>(&machine, true));
    assert!(
        message.starts_with(&format!("{SPIN_LOCK_RULE} (1 held)")),
        "{message}"
    );
}

#[test]
fn in_an_interrupt_handler_the_freebsd_policy_names_the_rule() {
    let machine = machine();
    let message = panic_of(|| forbidden_program::<FreeBsdPolicy>(&machine, false));
    assert!(message.starts_with(INTERRUPT_RULE), "{message}");
}

#[test]
fn each_freebsd_rule_fires_for_every_kind_of_call() {
    let machine = machine();
    let quickmap = quickmap_with::<FreeBsdPolicy>(&machine);
    let (high, low) = (SimPage::high_memory(&machine, 0), SimPage::new(1));
    let calls: [(&str, &dyn Fn()); 6] = [
        ("map of a window page", &|| drop(quickmap.map(&high))),
        ("map of a direct-map page", &|| drop(quickmap.map(&low))),
        ("try_map", &|| drop(quickmap.try_map(&high))),
        ("enter", &|| {
            let va = quickmap.enter(&high);
            // SAFETY: `va` came from `enter` in this context (not reached: it panics).
            unsafe { quickmap.remove(va) }
        }),
        ("zero_page", &|| quickmap.zero_page(&high)),
        ("copy_page", &|| quickmap.copy_page(&low, &high)),
    ];
    for (what, call) in calls {
        machine.set_spin_locks_held(2);
        let message = panic_of(call);
        machine.set_spin_locks_held(0);
        assert!(
            message.starts_with(&format!("{SPIN_LOCK_RULE} (2 held)")),
            "{what}: {message}"
        );
        let message = panic_of(|| machine.interrupt(call));
        assert!(message.starts_with(INTERRUPT_RULE), "{what}: {message}");
        // Refused before anything was mapped or pinned.
        assert_eq!(quickmap.windows_in_use(0), 0, "{what}");
        assert_eq!(
            machine.critical_depth(machine.current_thread()),
            0,
            "{what}"
        );
        call(); // and allowed in a thread without spin locks
    }
}

#[test]
fn a_spin_lock_is_the_executing_cpus_alone() {
    let machine = machine();
    let quickmap = quickmap_with::<FreeBsdPolicy>(&machine);
    let page = SimPage::high_memory(&machine, 0);
    machine.on_cpu(3);
    machine.set_spin_locks_held(1);
    for cpu in 0..3 {
        machine.on_cpu(cpu);
        quickmap.map(&page).write_u64(0, cpu as u64);
    }
    machine.on_cpu(3);
    let message = panic_of(|| drop(quickmap.map(&page)));
    assert!(message.starts_with(SPIN_LOCK_RULE), "{message}");
}
