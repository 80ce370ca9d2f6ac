//! The benchmark's clock: the TSC, which under `-icount shift=0` advances one
//! tick per guest instruction (DESIGN.md §5).

pub use super::tsc::{hz, read};

/// Nothing to start: the TSC always runs. Under icount it counts instructions
/// as it is, so there is nothing to check either.
pub fn start(_icount: bool) -> Result<Option<&'static str>, alloc::string::String> {
    Ok(None)
}
