//! Parses the lines of a `mode=run` boot (`docs/kernel-protocol.md`, "mode=run: the
//! page workload"). Lines that do not parse are not protocol lines and are left to be
//! shown as they are.

use crate::fields::Fields;
use crate::protocol::protocol_body;

/// One line of the workload protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadLine {
    /// `qmk: progress ...`.
    Progress(Progress),
    /// `qmk: mismatch ...`: a verification failure.
    Mismatch(Mismatch),
    /// `qmk: summary KEY=VALUE`.
    Summary {
        /// The counter's name.
        key: String,
        /// Its value.
        value: u64,
    },
    /// `qmk: run ok`.
    RunOk,
    /// `qmk: run FAILED: REASON`.
    RunFailed {
        /// The kernel's reason.
        reason: String,
    },
}

/// A progress report, about once a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Operations done so far, all CPUs.
    pub done: u64,
    /// The target (`ops=`), or 0 for a timed run.
    pub total: u64,
    /// Bytes moved so far.
    pub bytes: u64,
    /// Guest time since the workload started.
    pub elapsed_ms: u64,
    /// The run's length in guest time (`secs=` runs only).
    pub duration_ms: Option<u64>,
    /// Operations per CPU, by CPU number, in the order given.
    pub per_cpu: Vec<(u32, u64)>,
}

impl Progress {
    /// The fraction done in 0..=1, from the operation target or else the duration.
    pub fn fraction(&self) -> Option<f64> {
        let fraction = if self.total > 0 {
            self.done as f64 / self.total as f64
        } else {
            let duration = self.duration_ms.filter(|&d| d > 0)?;
            self.elapsed_ms as f64 / duration as f64
        };
        Some(fraction.clamp(0.0, 1.0))
    }

    /// Average operations per second of guest time so far.
    pub fn ops_per_second(&self) -> Option<f64> {
        per_second(self.done, self.elapsed_ms)
    }

    /// Average bytes per second of guest time so far.
    pub fn bytes_per_second(&self) -> Option<f64> {
        per_second(self.bytes, self.elapsed_ms)
    }
}

/// `count` per second over `elapsed_ms`; `None` before any time has passed.
pub fn per_second(count: u64, elapsed_ms: u64) -> Option<f64> {
    (elapsed_ms > 0).then(|| count as f64 * 1000.0 / elapsed_ms as f64)
}

/// A verification failure: the kernel read back something other than it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The operation kind (`zero`, `copy`...), if given.
    pub kind: Option<String>,
    /// Everything after `mismatch `, to show as the kernel wrote it.
    pub details: String,
}

/// Parses one serial line; `None` if it is not a workload protocol line.
pub fn parse_workload_line(line: &str) -> Option<WorkloadLine> {
    let body = protocol_body(line)?;
    if let Some(rest) = body.strip_prefix("progress ") {
        return parse_progress(rest).map(WorkloadLine::Progress);
    }
    if let Some(rest) = body.strip_prefix("mismatch ") {
        return Some(WorkloadLine::Mismatch(Mismatch {
            kind: Fields::parse(rest).get("kind").map(str::to_string),
            details: rest.trim().to_string(),
        }));
    }
    if let Some(rest) = body.strip_prefix("summary ") {
        let (key, value) = rest.trim().split_once('=')?;
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        return Some(WorkloadLine::Summary {
            key: key.to_string(),
            value: value.trim().parse().ok()?,
        });
    }
    let body = body.trim_end();
    if body == "run ok" {
        return Some(WorkloadLine::RunOk);
    }
    if let Some(reason) = body.strip_prefix("run FAILED") {
        let reason = reason.trim_start_matches(':').trim();
        return Some(WorkloadLine::RunFailed {
            reason: reason.to_string(),
        });
    }
    None
}

fn parse_progress(text: &str) -> Option<Progress> {
    let fields = Fields::parse(text);
    let per_cpu = fields
        .iter()
        .filter_map(|(key, value)| {
            let cpu = key.strip_prefix("cpu")?.parse().ok()?;
            Some((cpu, value.parse().ok()?))
        })
        .collect();
    Some(Progress {
        done: fields.number("done")?,
        total: fields.number("total")?,
        bytes: fields.number("bytes")?,
        elapsed_ms: fields.number("elapsed_ms")?,
        duration_ms: fields.number("duration_ms"),
        per_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        let line = "qmk: progress done=500 total=1000 bytes=2048000 elapsed_ms=2000 cpu0=200 \
                    cpu1=300\r";
        let Some(WorkloadLine::Progress(progress)) = parse_workload_line(line) else {
            panic!("not parsed");
        };
        assert_eq!(
            progress,
            Progress {
                done: 500,
                total: 1000,
                bytes: 2_048_000,
                elapsed_ms: 2000,
                duration_ms: None,
                per_cpu: vec![(0, 200), (1, 300)],
            }
        );
        assert_eq!(progress.fraction(), Some(0.5));
        assert_eq!(progress.ops_per_second(), Some(250.0));
        assert_eq!(progress.bytes_per_second(), Some(1_024_000.0));
    }

    #[test]
    fn timed_runs_use_the_duration() {
        let Some(WorkloadLine::Progress(progress)) = parse_workload_line(
            "qmk: progress done=9 total=0 bytes=0 elapsed_ms=2500 duration_ms=10000 cpu0=9",
        ) else {
            panic!("not parsed");
        };
        assert_eq!(progress.fraction(), Some(0.25));
        let no_target = Progress {
            duration_ms: None,
            ..progress.clone()
        };
        assert_eq!(no_target.fraction(), None);
        let overshoot = Progress {
            elapsed_ms: 12_000,
            ..progress
        };
        assert_eq!(overshoot.fraction(), Some(1.0));
        assert_eq!(per_second(5, 0), None);
    }

    #[test]
    fn other_lines() {
        assert_eq!(
            parse_workload_line(
                "qmk: mismatch kind=copy page=0x7f000 cpu=1 thread=3 offset=0x10 \
                 expected=0xaa found=0x00"
            ),
            Some(WorkloadLine::Mismatch(Mismatch {
                kind: Some("copy".into()),
                details: "kind=copy page=0x7f000 cpu=1 thread=3 offset=0x10 expected=0xaa \
                          found=0x00"
                    .into(),
            }))
        );
        assert_eq!(
            parse_workload_line("qmk: summary zero=12"),
            Some(WorkloadLine::Summary {
                key: "zero".into(),
                value: 12
            })
        );
        assert_eq!(
            parse_workload_line("qmk: run ok"),
            Some(WorkloadLine::RunOk)
        );
        assert_eq!(
            parse_workload_line("qmk: run FAILED: 2 mismatches"),
            Some(WorkloadLine::RunFailed {
                reason: "2 mismatches".into()
            })
        );
    }

    #[test]
    fn malformed_lines_are_not_protocol() {
        for line in [
            "qmk: progress done=1",
            "qmk: progress done=x total=0 bytes=0 elapsed_ms=0",
            "qmk: summary zero",
            "qmk: summary zero=many",
            "qmk: summary =3",
            "qmk: run okay",
            "qmk: test a ... ok",
            "progress done=1 total=1 bytes=0 elapsed_ms=1",
        ] {
            assert_eq!(parse_workload_line(line), None, "{line}");
        }
    }
}
