//! The host side of the benchmark (`mode=bench`, DESIGN.md §6): parse each boot's
//! lines, compute per-pair costs and throughput, check the targets, and write the
//! table, `bench.json` and `throughput.svg`.

pub mod document;
pub mod figures;
pub mod lines;
pub mod plot;
pub mod table;
pub mod targets;
