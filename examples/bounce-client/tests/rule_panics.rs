//! Point 2: a broken rule panics at the caller's line (`#[track_caller]`), and the
//! message names the rule (`quickmap: <rule>`) and ends with what to do.
//!
//! A panic hook records each panic's `Location` (see `common`); every assertion checks
//! that it is this file, at the line of the call, not a line inside quickmap.

#[macro_use]
mod common;

use bounce_client::bounce::BounceMap;
use bounce_client::host_mmu::{host_quickmap, HostFrame, HostQuickMap};
use common::assert_rule;
use quickmap::{HeldPage, PhysAddr, VirtAddr, PAGE_SIZE};

/// A page whose `HeldPage` implementation is wrong on purpose: it reports an address
/// that is not a page's first byte (or not below the physical limit).
struct BrokenPage(PhysAddr);

// SAFETY: deliberately broken promise 1 (a page-aligned address) or range, to show that
// quickmap refuses the page before it maps anything: page alignment and the physical
// limit are checked in every build. Nothing is ever written through such a page.
unsafe impl HeldPage for BrokenPage {
    fn phys_addr(&self) -> PhysAddr {
        self.0
    }
}

fn quickmap() -> HostQuickMap<4> {
    host_quickmap(32, 8).unwrap()
}

fn high(quickmap: &HostQuickMap<4>, index: usize) -> HostFrame {
    quickmap.mmu().high_frame(index)
}

/// After a rule panic the instance is as it was: every window free, no critical
/// section left open.
fn assert_nothing_held(quickmap: &HostQuickMap<4>) {
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(quickmap.platform().critical_depth(), 0);
    assert_eq!(quickmap.mmu().entries_present(), 0);
}

#[test]
fn an_unaligned_page_is_refused_at_the_callers_line() {
    let quickmap = quickmap();
    let page = BrokenPage(PhysAddr(0x9000 + 0x234));
    let (caught, line) = catch!(quickmap.enter(&page));
    let remedy = "a `HeldPage` reports the address of its page's first byte";
    assert_rule(&caught, "unaligned page", file!(), line, remedy);
    let (caught, line) = catch!(quickmap.map(&page));
    assert_rule(&caught, "unaligned page", file!(), line, remedy);
    assert_nothing_held(&quickmap);
}

#[test]
fn a_page_above_the_physical_limit_is_refused() {
    let quickmap = quickmap();
    let page = BrokenPage(PhysAddr(1 << 40));
    let (caught, line) = catch!(quickmap.map(&page));
    let remedy = "map only pages below `Config::phys_limit`";
    assert_rule(&caught, "page out of range", file!(), line, remedy);
    assert_nothing_held(&quickmap);
}

#[test]
fn nesting_beyond_capacity_names_the_fallback() {
    let quickmap = quickmap();
    let pages: Vec<_> = (0..5).map(|index| high(&quickmap, index)).collect();
    let held: Vec<_> = pages[..4].iter().map(|page| quickmap.map(page)).collect();
    let (caught, line) = catch!(quickmap.map(&pages[4]));
    assert_rule(
        &caught,
        "nesting beyond capacity",
        file!(),
        line,
        "`try_enter`/`try_map`",
    );
    assert!(
        caught.message.contains("CPU 0 already holds all 4"),
        "{caught:?}"
    );
    // The refused map gave its critical section back: only the four guards hold one.
    assert_eq!(quickmap.platform().critical_depth(), 4);
    drop(held);
    assert_nothing_held(&quickmap);
}

#[test]
fn an_access_past_the_page_is_refused() {
    let quickmap = quickmap();
    let page = high(&quickmap, 0);
    let mapping = quickmap.map(&page);
    mapping.write_u16(PAGE_SIZE - 2, 7); // the last two bytes: fine
    let (caught, line) = catch!(mapping.read_u32(PAGE_SIZE - 2));
    let remedy = "keep offset + length within the page";
    assert_rule(&caught, "access outside the page", file!(), line, remedy);
    let (caught, line) = catch!(mapping.write(PAGE_SIZE, b"x"));
    assert_rule(&caught, "access outside the page", file!(), line, remedy);
    drop(mapping);
    assert_nothing_held(&quickmap);
}

#[test]
fn views_too_large_for_any_cpu_or_for_this_one_are_refused() {
    let quickmap = quickmap();
    let pages: Vec<_> = (0..8).map(|index| high(&quickmap, index)).collect();
    // 4 windows per CPU map at most 7 pages in one view.
    let (caught, line) = catch!(quickmap.map_pages(&pages));
    assert_rule(
        &caught,
        "view size",
        file!(),
        line,
        "split the work into views",
    );
    // 6 pages need all 4 windows, and window 0 is in use.
    let single = quickmap.map(&pages[7]);
    let (caught, line) = catch!(quickmap.map_pages(&pages[..6]));
    assert_rule(
        &caught,
        "no room for the view",
        file!(),
        line,
        "`try_map_pages`",
    );
    drop(single);
    assert_nothing_held(&quickmap);
}

#[test]
fn an_access_past_the_view_is_refused() {
    let quickmap = quickmap();
    let pages = [high(&quickmap, 3), high(&quickmap, 1)];
    let view = quickmap.map_pages(&pages);
    let (caught, line) = catch!(view.read_u16(view.len() - 1));
    let remedy = "keep offset + length within the view";
    assert_rule(&caught, "access outside the view", file!(), line, remedy);
    drop(view);
    assert_nothing_held(&quickmap);
}

#[test]
fn copy_page_needs_two_windows_on_every_instance_with_one() {
    let quickmap = host_quickmap::<1>(8, 0).unwrap();
    let (source, destination) = (quickmap.mmu().frame(1), quickmap.mmu().frame(2));
    let (caught, line) = catch!(quickmap.copy_page(&source, &destination));
    assert_rule(
        &caught,
        "copy_page needs two windows",
        file!(),
        line,
        "at least 2",
    );
}

#[test]
fn a_double_remove_is_caught_with_contract_checks() {
    let quickmap = quickmap();
    let page = high(&quickmap, 0);
    let va = quickmap.enter(&page);
    // SAFETY: `va` came from `enter` just above, in this context.
    unsafe { quickmap.remove(va) };
    // SAFETY: deliberately broken (removed twice) to show the check of the feature
    // `contract-checks` (a default feature); it panics before changing anything.
    let (caught, line) = catch!(unsafe { quickmap.remove(va) });
    let remedy = "remove each address `enter` returned exactly once";
    assert_rule(&caught, "double remove", file!(), line, remedy);
    // SAFETY: as above: an address `enter` never returned, refused before any change.
    let (caught, line) = catch!(unsafe { quickmap.remove(VirtAddr(0x1000)) });
    let remedy = "pass `remove` only an address `enter` returned";
    assert_rule(
        &caught,
        "remove of a foreign address",
        file!(),
        line,
        remedy,
    );
    assert_nothing_held(&quickmap);
}

#[test]
fn the_callers_line_survives_the_clients_own_track_caller_code() {
    // `BounceMap::sync_prewrite` is `#[track_caller]`, with a loop (not a closure) on
    // the way to `QuickMap::map`: the panic names this line, not bounce.rs.
    let quickmap = quickmap();
    let pages = [high(&quickmap, 0), high(&quickmap, 1)];
    let others: Vec<_> = (2..6).map(|index| high(&quickmap, index)).collect();
    let held: Vec<_> = others.iter().map(|page| quickmap.map(page)).collect();
    let map = BounceMap::new(&pages, 5000).unwrap();
    let buffer = vec![0xa5; 5000];
    let (caught, line) = catch!(map.sync_prewrite(&quickmap, &buffer));
    assert_rule(
        &caught,
        "nesting beyond capacity",
        file!(),
        line,
        "`try_enter`/`try_map`",
    );
    drop(held);
    assert_nothing_held(&quickmap);
}
