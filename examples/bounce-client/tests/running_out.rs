//! Point 3: when every window of the CPU is in use, `try_map` and `try_enter` return an
//! error instead of panicking, leave nothing behind, and the caller falls back: here the
//! bounce copy is put off to a context that holds no window.

use bounce_client::bounce::{BounceMap, SyncQueue, Synced};
use bounce_client::host_mmu::{host_quickmap, HostQuickMap};
use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::{EnterError, ViewError, PAGE_SIZE};

fn quickmap() -> HostQuickMap<4> {
    host_quickmap(32, 8).unwrap()
}

#[test]
fn try_map_and_try_enter_return_an_error_when_every_window_is_in_use() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let pages: Vec<_> = (0..5).map(|index| mmu.high_frame(index)).collect();
    let held: Vec<_> = pages[..4].iter().map(|page| quickmap.map(page)).collect();
    let writes = mmu.counters().entries_written;

    let error = quickmap.try_map(&pages[4]).unwrap_err();
    assert_eq!(
        error,
        EnterError {
            cpu: 0,
            capacity: 4
        }
    );
    assert_eq!(quickmap.try_enter(&pages[4]), Err(error));
    // Nothing mapped, and preemption as it was: one critical section per guard.
    assert_eq!(mmu.counters().entries_written, writes);
    assert_eq!(quickmap.windows_in_use(0), 0b1111);
    assert_eq!(quickmap.platform().critical_depth(), 4);
    // The message says what to do.
    let shown = error.to_string();
    assert!(shown.starts_with("quickmap: no free window"), "{shown}");
    assert!(
        shown.contains("remove a mapping of this CPU and try again"),
        "{shown}"
    );

    // Giving one back is enough.
    drop(held);
    let va = quickmap.try_enter(&pages[4]).unwrap();
    // SAFETY: `va` came from `try_enter` just above, in this context, and is not used
    // again.
    unsafe { quickmap.remove(va) };
    assert_eq!(quickmap.platform().critical_depth(), 0);
}

#[test]
fn a_write_that_finds_no_window_is_deferred_and_run_later() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let bounce = [mmu.high_frame(10), mmu.high_frame(11)];
    let others: Vec<_> = (0..4).map(|index| mmu.high_frame(index)).collect();
    let buffer: Vec<u8> = (0..6000).map(|index| (index % 251) as u8).collect();
    let mut queue = SyncQueue::new();

    let held: Vec<_> = others.iter().map(|page| quickmap.map(page)).collect();
    let map = BounceMap::new(&bounce, buffer.len()).unwrap();
    let synced = queue.prewrite_or_defer(&quickmap, map, &buffer);
    assert_eq!(
        synced,
        Synced::Deferred(EnterError {
            cpu: 0,
            capacity: 4
        })
    );
    assert_eq!(queue.len(), 1);
    let mut first = [0u8; 16];
    mmu.phys_read(bounce[0].pa(), &mut first);
    assert_eq!(first, [0; 16], "nothing copied yet");

    // The context that held the windows lets them go, then runs what was put off.
    drop(held);
    assert_eq!(queue.run(&quickmap), 1);
    assert!(queue.is_empty());
    let mut copied = vec![0u8; buffer.len()];
    mmu.phys_read(bounce[0].pa(), &mut copied[..PAGE_SIZE]);
    mmu.phys_read(bounce[1].pa(), &mut copied[PAGE_SIZE..]);
    assert_eq!(copied, buffer);

    // With a window free, the same call copies at once.
    let map = BounceMap::new(&bounce, 10).unwrap();
    assert_eq!(
        queue.prewrite_or_defer(&quickmap, map, b"0123456789"),
        Synced::Now
    );
    assert!(queue.is_empty());
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(quickmap.platform().critical_depth(), 0);
}

#[test]
fn an_interrupt_handler_defers_to_the_thread_it_interrupted() {
    // On the simulated machine: the thread holds all four windows of CPU 0 when the
    // interrupt arrives; the handler's copy cannot map, so it queues it, and the thread
    // runs it once it has let its windows go.
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let thread_pages: Vec<_> = (0..4).map(|i| SimPage::high_memory(&machine, i)).collect();
    let bounce = [SimPage::high_memory(&machine, 8)];
    let mut queue = SyncQueue::new();

    let held: Vec<_> = thread_pages.iter().map(|page| quickmap.map(page)).collect();
    let synced = machine.interrupt(|| {
        let map = BounceMap::new(&bounce, 5).unwrap();
        queue.prewrite_or_defer(&quickmap, map, b"irq!!")
    });
    assert_eq!(
        synced,
        Synced::Deferred(EnterError {
            cpu: 0,
            capacity: 4
        })
    );
    drop(held);
    assert_eq!(queue.run(&quickmap), 1);
    let mut back = [0u8; 5];
    machine.phys_read(bounce[0].pa, &mut back);
    assert_eq!(&back, b"irq!!");

    // An interrupt that finds a window free copies at once, while the thread holds
    // three of its own.
    let held: Vec<_> = thread_pages[..3]
        .iter()
        .map(|page| quickmap.map(page))
        .collect();
    let synced = machine.interrupt(|| {
        let map = BounceMap::new(&bounce, 5).unwrap();
        queue.prewrite_or_defer(&quickmap, map, b"again")
    });
    assert_eq!(synced, Synced::Now);
    drop(held);
    machine.phys_read(bounce[0].pa, &mut back);
    assert_eq!(&back, b"again");
    assert_eq!(quickmap.windows_in_use(0), 0);
}

#[test]
fn a_view_that_finds_no_room_falls_back_to_one_page_at_a_time() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let pages: Vec<_> = (0..5).map(|index| mmu.high_frame(index)).collect();
    let other = mmu.high_frame(9);
    let single = quickmap.map(&other); // window 0

    // Five pages need three adjacent windows: there are, after window 0.
    let view = quickmap.try_map_pages(&pages).unwrap();
    drop(view);
    // Six would need four.
    let more = [pages.as_slice(), &[mmu.high_frame(5)]].concat();
    let error = quickmap.try_map_pages(&more).unwrap_err();
    assert_eq!(
        error,
        ViewError {
            cpu: 0,
            pages: 6,
            windows_needed: 4,
            in_use: 0b1,
            capacity: 4
        }
    );
    assert_eq!(
        quickmap.platform().critical_depth(),
        1,
        "only the single mapping"
    );
    // The fallback: fill the pages one at a time.
    for (index, page) in more.iter().enumerate() {
        quickmap.map(page).fill(0, PAGE_SIZE, index as u8 + 1);
    }
    drop(single);
    for (index, page) in more.iter().enumerate() {
        let mut byte = [0u8];
        mmu.phys_read(page.pa(), &mut byte);
        assert_eq!(byte, [index as u8 + 1]);
    }
}
