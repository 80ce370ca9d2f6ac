//! Every public error type is a `core::error::Error` (so `?` turns it into a
//! `Box<dyn Error>`), `Send + Sync + 'static`, and says what went wrong.

use core::error::Error;

use quickmap::sim::{SchedError, SimConfig, SimMachine, SimPage};
use quickmap::{ConfigError, EnterError, Mismatch};

/// Compile-time: each type is an error that can cross threads and be boxed.
fn is_a_thread_safe_error<E: Error + Send + Sync + 'static>() {}

#[test]
fn every_public_error_type_is_an_error() {
    is_a_thread_safe_error::<ConfigError>();
    is_a_thread_safe_error::<EnterError>();
    is_a_thread_safe_error::<Mismatch>();
    is_a_thread_safe_error::<SchedError>();
}

/// The errors quickmap actually returns, through `&dyn Error`.
#[test]
fn the_errors_quickmap_returns_read_as_dyn_error() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<1>();
    let page = SimPage::high_memory(&machine, 0);
    let mut errors: Vec<Box<dyn Error + Send + Sync>> = Vec::new();

    let mapping = quickmap.map(&page);
    errors.push(Box::new(quickmap.try_map(&page).err().unwrap()));
    errors.push(Box::new(mapping.compare(0, &[1]).unwrap_err()));
    errors.push(Box::new(
        machine.migrate(machine.current_thread(), 1).unwrap_err(),
    ));
    drop(mapping);
    let mut config = machine.quickmap_config();
    config.window_base.0 += 4096;
    let cpus = Box::leak(Box::new([const { quickmap::CpuWindows::<1>::new() }]));
    errors.push(Box::new(
        quickmap::QuickMap::<_, _, 1>::new(config, machine.platform(), machine.mmu(), cpus)
            .err()
            .unwrap(),
    ));

    let shown: Vec<String> = errors.iter().map(|error| error.to_string()).collect();
    assert!(
        shown[0].starts_with("quickmap: no free window: CPU 0"),
        "{}",
        shown[0]
    );
    assert_eq!(shown[1], "byte at offset 0x0: expected 0x01, found 0x00");
    assert_eq!(shown[2], "thread 0 on CPU 0 is in a critical section");
    assert!(
        shown[3].contains("is not aligned to the CPU stride"),
        "{}",
        shown[3]
    );
    for error in &errors {
        let as_dyn: &dyn Error = &**error;
        assert!(as_dyn.source().is_none());
    }
}

/// `?` in a function that returns `Box<dyn Error>`.
#[test]
fn question_mark_boxes_each_error() -> Result<(), Box<dyn Error>> {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<1>();
    let page = SimPage::high_memory(&machine, 0);
    let mapping = quickmap.try_map(&page)?;
    mapping.write(0, &[7]);
    mapping.compare(0, &[7])?;
    drop(mapping);
    machine.migrate(machine.current_thread(), 1)?;
    Ok(())
}
