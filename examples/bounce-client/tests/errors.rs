//! Point 6: quickmap's error types implement `core::error::Error`, so `?` carries them
//! into a `Box<dyn Error>`, where a caller can still tell them apart by downcasting.

use std::error::Error;

use bounce_client::bounce::{BounceMap, TooFewPages};
use bounce_client::host_mmu::{
    host_quickmap, HostFrame, HostMmu, HostQuickMap, OneCpu, WINDOW_BASE,
};
use quickmap::{
    Config, ConfigError, CpuWindows, EnterError, Mismatch, QuickMap, ViewError, WindowLayout,
    PAGE_SIZE,
};

/// Maps `pages` one at a time and then as one view, and checks the view holds
/// `expected`; every failure is a `?`.
fn fill_and_check(
    quickmap: &HostQuickMap<4>,
    pages: &[HostFrame],
    expected: u8,
) -> Result<(), Box<dyn Error>> {
    for page in pages {
        quickmap.try_map(page)?.fill(0, PAGE_SIZE, 0xee);
    }
    let view = quickmap.try_map_pages(pages)?;
    view.compare(0, &vec![expected; view.len()])?;
    Ok(())
}

#[test]
fn every_error_comes_through_question_mark_and_downcasts_back() {
    let quickmap = host_quickmap::<4>(32, 8).unwrap();
    let mmu = quickmap.mmu();
    let pages: Vec<_> = (0..3).map(|index| mmu.high_frame(index)).collect();

    // `Mismatch`: the first byte that differs.
    let error = fill_and_check(&quickmap, &pages, 0xef).unwrap_err();
    let mismatch = error.downcast_ref::<Mismatch>().unwrap();
    assert_eq!(
        *mismatch,
        Mismatch {
            offset: 0,
            expected: 0xef,
            found: 0xee
        }
    );
    assert_eq!(
        error.to_string(),
        "byte at offset 0x0: expected 0xef, found 0xee"
    );
    assert!(fill_and_check(&quickmap, &pages, 0xee).is_ok());

    // `EnterError`: every window in use.
    let others: Vec<_> = (4..8).map(|index| mmu.high_frame(index)).collect();
    let held: Vec<_> = others.iter().map(|page| quickmap.map(page)).collect();
    let error = fill_and_check(&quickmap, &pages, 0xee).unwrap_err();
    assert_eq!(
        error.downcast_ref::<EnterError>(),
        Some(&EnterError {
            cpu: 0,
            capacity: 4
        })
    );
    drop(held);

    // `ViewError`: one window left where the view needs two.
    let held: Vec<_> = others[..3].iter().map(|page| quickmap.map(page)).collect();
    let error = fill_and_check(&quickmap, &pages, 0xee).unwrap_err();
    let view_error = error.downcast_ref::<ViewError>().unwrap();
    assert_eq!((view_error.pages, view_error.windows_needed), (3, 2));
    assert!(
        error
            .to_string()
            .starts_with("quickmap: no room for the view"),
        "{error}"
    );
    drop(held);
}

#[test]
fn a_refused_configuration_and_our_own_errors_box_the_same_way() {
    fn build() -> Result<QuickMap<OneCpu, HostMmu, 4>, Box<dyn Error>> {
        let layout = WindowLayout::guarded(WINDOW_BASE, 4);
        let mmu = HostMmu::new(8, 0, layout, 1);
        // Not aligned to the CPU stride.
        let config = Config {
            window_base: WINDOW_BASE.add(PAGE_SIZE),
            ..mmu.config()
        };
        let cpus: &'static [CpuWindows<4>] = Box::leak(Box::new([const { CpuWindows::new() }; 1]));
        Ok(QuickMap::new(config, OneCpu::default(), mmu, cpus)?)
    }
    let error = build().err().unwrap();
    assert!(matches!(
        error.downcast_ref::<ConfigError>(),
        Some(ConfigError::BaseMisaligned { .. })
    ));

    fn bounce(pages: &[HostFrame]) -> Result<usize, Box<dyn Error>> {
        Ok(BounceMap::new(pages, 3 * PAGE_SIZE)?.len())
    }
    let quickmap = host_quickmap::<4>(8, 0).unwrap();
    let error = bounce(&[quickmap.mmu().frame(0)]).unwrap_err();
    assert_eq!(
        error.downcast_ref::<TooFewPages>(),
        Some(&TooFewPages {
            len: 3 * PAGE_SIZE,
            pages: 1
        })
    );
}
