//! The kernel command line: space-separated `key=value` words
//! (`docs/kernel-protocol.md` lists the keys).

use core::fmt;

/// Direct-map size when `dmap=` is not given.
pub const DEFAULT_DIRECT_MAP_MIB: u64 = 256;
/// The kernel's own memory (page tables, heap) lives in the direct map, so it
/// cannot be smaller than this.
pub const MIN_DIRECT_MAP_MIB: u64 = 32;

/// What this boot does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    Run,
    Test,
    Bench,
    List,
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    pub mode: BootMode,
    /// `test=`: an exact test name or a substring filter.
    pub test_filter: Option<&'static str>,
    /// `dmap=`: size of the direct map of low physical memory, in MiB.
    pub direct_map_mib: u64,
    /// `seed=`: seed for randomised tests and workloads.
    pub seed: u64,
    /// `ops=` / `secs=`: how long the `mode=run` workload lasts.
    pub workload_length: Option<WorkloadLength>,
    /// `icount=1`: QEMU runs with `-icount shift=0`, so a TSC tick is one
    /// guest instruction (the benchmark then reports instruction counts).
    pub icount: bool,
    /// `pairs=`: iterations per benchmark variant.
    pub bench_pairs: Option<u64>,
    /// `invalidation=`: which quickmap instance the `mode=run` workload drives.
    pub invalidation: Invalidation,
}

/// When the workload's quick mappings leave the TLB (`invalidation=`; see
/// `quickmap::invalidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Invalidation {
    /// The kernel's strict instance: every remove invalidates (the default).
    #[default]
    Strict,
    /// The kernel's deferred instance: write-back windows stay mapped until the
    /// CPU's next local full flush.
    Deferred,
}

impl Invalidation {
    /// The value of `invalidation=` that selects it.
    pub fn word(self) -> &'static str {
        match self {
            Invalidation::Strict => "strict",
            Invalidation::Deferred => "deferred",
        }
    }
}

/// How long the page workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadLength {
    /// Stop after this many operations over all CPUs.
    Operations(u64),
    /// Stop after this many seconds.
    Seconds(u64),
}

/// A command line the kernel refuses; the message is printed after `qmk: error: `.
#[derive(Debug, PartialEq, Eq)]
pub enum BootOptionError<'a> {
    UnknownKey(&'a str),
    MissingValue(&'a str),
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

impl fmt::Display for BootOptionError<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::UnknownKey(key) => write!(formatter, "unknown boot option '{key}'"),
            Self::MissingValue(word) => {
                write!(
                    formatter,
                    "boot option '{word}' is not of the form key=value"
                )
            }
            Self::BadValue {
                key,
                value,
                expected,
            } => write!(
                formatter,
                "boot option '{key}={value}' is invalid: expected {expected}"
            ),
        }
    }
}

impl BootOptions {
    /// Parses `command_line`; every word must be a known `key=value`.
    pub fn parse(command_line: &'static str) -> Result<Self, BootOptionError<'static>> {
        let mut options = Self {
            mode: BootMode::Run,
            test_filter: None,
            direct_map_mib: DEFAULT_DIRECT_MAP_MIB,
            seed: 0,
            workload_length: None,
            icount: false,
            bench_pairs: None,
            invalidation: Invalidation::Strict,
        };
        let positive = |key: &'static str, value: &'static str| {
            value
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(BootOptionError::BadValue {
                    key,
                    value,
                    expected: "a positive integer",
                })
        };
        for word in command_line.split_ascii_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or(BootOptionError::MissingValue(word))?;
            match key {
                "mode" => {
                    options.mode = match value {
                        "run" => BootMode::Run,
                        "test" => BootMode::Test,
                        "bench" => BootMode::Bench,
                        "list" => BootMode::List,
                        _ => {
                            return Err(BootOptionError::BadValue {
                                key,
                                value,
                                expected: "one of run, test, bench, list",
                            })
                        }
                    }
                }
                "test" => options.test_filter = Some(value),
                "dmap" => {
                    let expected = "an even number of MiB, at least 32";
                    let mib: u64 = value.parse().map_err(|_| BootOptionError::BadValue {
                        key,
                        value,
                        expected,
                    })?;
                    // The direct map is built from 2 MiB pages.
                    if !mib.is_multiple_of(2) || mib < MIN_DIRECT_MAP_MIB {
                        return Err(BootOptionError::BadValue {
                            key,
                            value,
                            expected,
                        });
                    }
                    options.direct_map_mib = mib;
                }
                "seed" => {
                    options.seed = value.parse().map_err(|_| BootOptionError::BadValue {
                        key,
                        value,
                        expected: "an unsigned 64-bit integer",
                    })?
                }
                "ops" | "secs" => {
                    let amount = positive(key, value)?;
                    let length = if key == "ops" {
                        WorkloadLength::Operations(amount)
                    } else {
                        WorkloadLength::Seconds(amount)
                    };
                    if options.workload_length.is_some_and(|old| {
                        core::mem::discriminant(&old) != core::mem::discriminant(&length)
                    }) {
                        return Err(BootOptionError::BadValue {
                            key,
                            value,
                            expected: "either ops= or secs=, not both",
                        });
                    }
                    options.workload_length = Some(length);
                }
                "icount" => {
                    options.icount = match value {
                        "0" => false,
                        "1" => true,
                        _ => {
                            return Err(BootOptionError::BadValue {
                                key,
                                value,
                                expected: "0 or 1",
                            })
                        }
                    }
                }
                "pairs" => options.bench_pairs = Some(positive(key, value)?),
                "invalidation" => {
                    options.invalidation = match value {
                        "strict" => Invalidation::Strict,
                        "deferred" => Invalidation::Deferred,
                        _ => {
                            return Err(BootOptionError::BadValue {
                                key,
                                value,
                                expected: "strict or deferred",
                            })
                        }
                    }
                }
                _ => return Err(BootOptionError::UnknownKey(key)),
            }
        }
        Ok(options)
    }
}
