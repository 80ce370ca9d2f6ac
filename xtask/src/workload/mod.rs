//! The host side of the page workload (`mode=run`): its protocol lines, the live
//! progress display, and the summary table and verdict.

pub mod lines;
pub mod progress;
pub mod summary;
