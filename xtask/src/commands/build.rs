//! `cargo xtask build`: build the kernel, print where the ELF is.

use super::Failure;
use crate::cli::BuildOptions;
use crate::kernel_build::build_kernel;

/// Builds the kernel for `--arch` and prints the ELF's path on stdout (so scripts can use it).
pub fn build(options: &BuildOptions) -> Result<(), Failure> {
    let elf = build_kernel(options.arch, options.verbose)?;
    println!("{}", elf.display());
    Ok(())
}
