//! The live progress display of `cargo xtask run`.
//!
//! On a terminal an indicatif bar is redrawn in place on stdout from the first report
//! to the end of the workload, and a kernel line that arrives meanwhile is printed
//! above it. Elsewhere (CI logs, pipes) in-place redraws would pile up as garbage, so
//! a plain line is printed every [`PLAIN_INTERVAL_MS`] of guest time instead, and the
//! last report at the end. Both show the kernel's figures: its rates and times are
//! guest time, not the host's, so the bar's own clock is not used.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::lines::Progress;

/// Guest time between two plain progress lines: often enough to show life in a CI
/// log, rarely enough not to drown the kernel's own lines.
pub const PLAIN_INTERVAL_MS: u64 = 5_000;

/// Width of the bar between the brackets, live or plain.
const BAR_WIDTH: usize = 24;

/// Positions of the live bar: the fraction done, in thousandths.
const BAR_POSITIONS: u64 = 1000;

/// How the display reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayStyle {
    /// Stdout is a terminal: a live bar.
    Terminal,
    /// Anything else: periodic plain lines.
    Plain,
}

/// Shows progress reports and the other lines of the boot on `out`.
pub struct ProgressDisplay<W: Write> {
    /// Every line, except those printed above a live bar (which go where it draws).
    out: W,
    mode: Mode,
}

enum Mode {
    Terminal {
        /// Where a new bar draws: stdout, or a test's in-memory terminal.
        draw_target: fn() -> ProgressDrawTarget,
        /// The bar, from the first report until [`ProgressDisplay::finish`].
        bar: Option<ProgressBar>,
    },
    Plain {
        /// The last report, while it is not printed.
        unprinted: Option<String>,
        /// Guest time at which the next line is due.
        next_line_ms: u64,
    },
}

impl<W: Write> ProgressDisplay<W> {
    /// A display writing to `out` (stdout: the live bar draws there too) in `style`.
    pub fn new(out: W, style: DisplayStyle) -> ProgressDisplay<W> {
        let mode = match style {
            DisplayStyle::Terminal => Mode::Terminal {
                draw_target: ProgressDrawTarget::stdout,
                bar: None,
            },
            DisplayStyle::Plain => Mode::Plain {
                unprinted: None,
                next_line_ms: 0,
            },
        };
        ProgressDisplay { out, mode }
    }

    /// Shows a new progress report.
    pub fn progress(&mut self, progress: &Progress) {
        match &mut self.mode {
            Mode::Terminal { draw_target, bar } => {
                let bar = bar.get_or_insert_with(|| live_bar(draw_target()));
                let position = progress
                    .fraction()
                    .map_or(0, |f| (f * BAR_POSITIONS as f64).round() as u64);
                bar.set_position(position);
                bar.set_message(render_figures(progress));
            }
            Mode::Plain {
                unprinted,
                next_line_ms,
            } => {
                let text = render_progress(progress);
                if progress.elapsed_ms >= *next_line_ms {
                    *next_line_ms =
                        (progress.elapsed_ms / PLAIN_INTERVAL_MS + 1) * PLAIN_INTERVAL_MS;
                    *unprinted = None;
                    write_line(&mut self.out, &text);
                } else {
                    *unprinted = Some(text);
                }
            }
        }
    }

    /// Shows any other line (a kernel line, a mismatch), above the bar if one is live.
    pub fn line(&mut self, text: &str) {
        match &self.mode {
            Mode::Terminal { bar: Some(bar), .. } => bar.println(text),
            _ => write_line(&mut self.out, text),
        }
    }

    /// Ends the display: the bar stays as it was last drawn (terminal), the last report
    /// is printed if it was not (plain).
    pub fn finish(&mut self) {
        match &mut self.mode {
            Mode::Terminal { bar, .. } => {
                if let Some(bar) = bar.take() {
                    // `abandon` leaves the bar as it is; `finish` would fill it, whatever
                    // the last report said.
                    bar.abandon();
                }
            }
            Mode::Plain { unprinted, .. } => {
                if let Some(text) = unprinted.take() {
                    write_line(&mut self.out, &text);
                }
            }
        }
    }

    /// A terminal display whose bars draw on `draw_target` (a test's terminal).
    #[cfg(test)]
    fn with_draw_target(out: W, draw_target: fn() -> ProgressDrawTarget) -> ProgressDisplay<W> {
        ProgressDisplay {
            out,
            mode: Mode::Terminal {
                draw_target,
                bar: None,
            },
        }
    }

    /// Gives the writer back (tests read what was written).
    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

/// A bar like the plain lines: `[####    ]` then the figures, cut to the terminal's
/// width (a line that wraps cannot be redrawn in place).
fn live_bar(draw_target: ProgressDrawTarget) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!("[{{bar:{BAR_WIDTH}.cyan}}] {{wide_msg}}"))
        .expect("the bar's template is valid")
        .progress_chars("# ");
    ProgressBar::with_draw_target(Some(BAR_POSITIONS), draw_target).with_style(style)
}

fn write_line(out: &mut impl Write, text: &str) {
    // Stdout gone (e.g. `| head`) must not stop the boot: the log keeps everything.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// One progress report as a plain line, e.g.
/// `[############            ]  50%  500/1000 ops  250 ops/s  1.0 MB/s  2.0 s  per CPU: 200 300`.
pub fn render_progress(progress: &Progress) -> String {
    let filled = progress
        .fraction()
        .map_or(0, |f| (f * BAR_WIDTH as f64).round() as usize);
    let bar = format!("[{}{}]", "#".repeat(filled), " ".repeat(BAR_WIDTH - filled));
    format!("{bar} {}", render_figures(progress))
}

/// What follows the bar, live or plain, e.g.
/// ` 50%  500/1000 ops  250 ops/s  1.0 MB/s  2.0 s  per CPU: 200 300`.
fn render_figures(progress: &Progress) -> String {
    let percent = match progress.fraction() {
        Some(f) => format!("{:>3.0}%", f * 100.0),
        None => "  ?%".to_string(),
    };
    let ops = if progress.total > 0 {
        format!("{}/{} ops", progress.done, progress.total)
    } else {
        format!("{} ops", progress.done)
    };
    let time = match progress.duration_ms {
        Some(duration) if progress.total == 0 => format!(
            "{:.1}/{:.1} s",
            progress.elapsed_ms as f64 / 1000.0,
            duration as f64 / 1000.0
        ),
        _ => format!("{:.1} s", progress.elapsed_ms as f64 / 1000.0),
    };
    let rate = match (progress.ops_per_second(), progress.bytes_per_second()) {
        (Some(ops), Some(bytes)) => format!("{ops:.0} ops/s  {:.1} MB/s", bytes / 1e6),
        _ => "- ops/s  - MB/s".to_string(),
    };
    let mut text = format!("{percent}  {ops}  {rate}  {time}");
    if !progress.per_cpu.is_empty() {
        let counts: Vec<String> = progress
            .per_cpu
            .iter()
            .map(|(_, n)| n.to_string())
            .collect();
        text.push_str(&format!("  per CPU: {}", counts.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use indicatif::InMemoryTerm;

    use super::*;

    fn report(done: u64, elapsed_ms: u64) -> Progress {
        Progress {
            done,
            total: 1000,
            bytes: done * 4096,
            elapsed_ms,
            duration_ms: None,
            per_cpu: vec![(0, done / 2), (1, done - done / 2)],
        }
    }

    #[test]
    fn rendering() {
        assert_eq!(
            render_progress(&report(500, 2000)),
            "[############            ]  50%  500/1000 ops  250 ops/s  1.0 MB/s  2.0 s  \
             per CPU: 250 250"
        );
        let timed = Progress {
            total: 0,
            duration_ms: Some(10_000),
            per_cpu: vec![],
            ..report(100, 0)
        };
        assert_eq!(
            render_progress(&timed),
            "[                        ]   0%  100 ops  - ops/s  - MB/s  0.0/10.0 s"
        );
        let unknown = Progress {
            total: 0,
            ..report(7, 1000)
        };
        assert!(render_progress(&unknown).contains("  ?%  7 ops  7 ops/s"));
    }

    /// The terminal the test below draws on; a function pointer cannot capture it.
    fn test_terminal() -> &'static InMemoryTerm {
        static TERMINAL: OnceLock<InMemoryTerm> = OnceLock::new();
        TERMINAL.get_or_init(|| InMemoryTerm::new(10, 120))
    }

    #[test]
    fn terminal_draws_a_live_bar_below_other_lines() {
        let draw_target = || ProgressDrawTarget::term_like(Box::new(test_terminal().clone()));
        let mut display = ProgressDisplay::with_draw_target(Vec::new(), draw_target);
        // No bar before the first report: the line goes out as it is.
        display.line("qmk: starting");
        display.progress(&report(100, 1000));
        display.line("qmk: cpu 2 busy");
        display.progress(&report(500, 2000));
        display.finish();
        // After the workload, lines go out as they are again.
        display.line("qmk: run ok");
        let out = String::from_utf8(display.into_inner()).unwrap();
        assert_eq!(out, "qmk: starting\nqmk: run ok\n");
        let screen = test_terminal().contents();
        let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "qmk: cpu 2 busy",
                "[############            ]  50%  500/1000 ops  250 ops/s  1.0 MB/s  2.0 s  \
                 per CPU: 250 250",
            ],
            "{screen}"
        );
    }

    #[test]
    fn plain_prints_periodically_and_the_last_report() {
        let mut display = ProgressDisplay::new(Vec::new(), DisplayStyle::Plain);
        for second in 1..=12 {
            display.progress(&report(second * 10, second * 1000));
            if second == 3 {
                display.line("qmk: hello");
            }
        }
        display.finish();
        let text = String::from_utf8(display.into_inner()).unwrap();
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        // 1 s (first), 5 s, 10 s, then the last one at finish.
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].contains(" 10/1000 ops"));
        assert_eq!(lines[1], "qmk: hello");
        assert!(lines[2].contains(" 50/1000 ops"));
        assert!(lines[3].contains(" 100/1000 ops"));
        assert!(lines[4].contains(" 120/1000 ops"));
    }

    #[test]
    fn plain_does_not_repeat_a_printed_last_report() {
        let mut display = ProgressDisplay::new(Vec::new(), DisplayStyle::Plain);
        display.progress(&report(10, 1000));
        display.finish();
        let text = String::from_utf8(display.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
