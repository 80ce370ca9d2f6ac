//! placeholder
use super::Failure;
use crate::cli::BenchOptions;
pub fn bench(_options: &BenchOptions) -> Result<(), Failure> {
    Ok(())
}
