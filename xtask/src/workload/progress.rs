//! The live progress display of `cargo xtask run`.
//!
//! On a terminal the bar is redrawn in place (`\r` and "erase line"), and a kernel
//! line that arrives meanwhile is printed above it. Elsewhere (CI logs, pipes) in-place
//! redraws would pile up as garbage, so a plain line is printed every
//! [`PLAIN_INTERVAL_MS`] of guest time instead.

use std::io::Write;

use super::lines::Progress;

/// Guest time between two plain progress lines: often enough to show life in a CI
/// log, rarely enough not to drown the kernel's own lines.
pub const PLAIN_INTERVAL_MS: u64 = 5_000;

/// Width of the bar between the brackets.
const BAR_WIDTH: usize = 24;

/// Carriage return plus ANSI "erase to end of line": start the line afresh.
const REDRAW: &str = "\r\x1b[K";

/// How the display reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayStyle {
    /// Stdout is a terminal: redraw in place.
    Terminal,
    /// Anything else: periodic plain lines.
    Plain,
}

/// Shows progress reports and the other lines of the boot on `out`.
pub struct ProgressDisplay<W: Write> {
    out: W,
    style: DisplayStyle,
    /// The bar as last drawn (terminal) or the last report not yet printed (plain).
    current: Option<String>,
    /// Plain style: guest time at which the next line is due.
    next_plain_ms: u64,
    /// Plain style: whether `current` has been printed.
    current_printed: bool,
}

impl<W: Write> ProgressDisplay<W> {
    /// A display writing to `out` in `style`.
    pub fn new(out: W, style: DisplayStyle) -> ProgressDisplay<W> {
        ProgressDisplay {
            out,
            style,
            current: None,
            next_plain_ms: 0,
            current_printed: true,
        }
    }

    /// Shows a new progress report.
    pub fn progress(&mut self, progress: &Progress) {
        let text = render_progress(progress);
        match self.style {
            DisplayStyle::Terminal => {
                self.write(&format!("{REDRAW}{text}"));
            }
            DisplayStyle::Plain => {
                if progress.elapsed_ms >= self.next_plain_ms {
                    self.write(&format!("{text}\n"));
                    self.next_plain_ms =
                        (progress.elapsed_ms / PLAIN_INTERVAL_MS + 1) * PLAIN_INTERVAL_MS;
                    self.current_printed = true;
                } else {
                    self.current_printed = false;
                }
            }
        }
        self.current = Some(text);
        let _ = self.out.flush();
    }

    /// Shows any other line (a kernel line, a mismatch), keeping the bar below it.
    pub fn line(&mut self, text: &str) {
        match (self.style, &self.current) {
            (DisplayStyle::Terminal, Some(bar)) => {
                let redraw = format!("{REDRAW}{text}\n{bar}");
                self.write(&redraw);
            }
            _ => self.write(&format!("{text}\n")),
        }
        let _ = self.out.flush();
    }

    /// Ends the display: the bar's line is finished (terminal), the last report is
    /// printed if it was not (plain).
    pub fn finish(&mut self) {
        match self.style {
            DisplayStyle::Terminal if self.current.is_some() => self.write("\n"),
            DisplayStyle::Plain if !self.current_printed => {
                if let Some(text) = self.current.clone() {
                    self.write(&format!("{text}\n"));
                }
            }
            _ => {}
        }
        self.current = None;
        self.current_printed = true;
        let _ = self.out.flush();
    }

    /// Gives the writer back (tests read what was written).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn write(&mut self, text: &str) {
        // Stdout gone (e.g. `| head`) must not stop the boot: the log keeps everything.
        let _ = self.out.write_all(text.as_bytes());
    }
}

/// One progress report as text, e.g.
/// `[############            ]  50%  500/1000 ops  250 ops/s  1.0 MB/s  2.0 s  per CPU: 200 300`.
pub fn render_progress(progress: &Progress) -> String {
    let fraction = progress.fraction();
    let filled = fraction.map_or(0, |f| (f * BAR_WIDTH as f64).round() as usize);
    let bar = format!("[{}{}]", "#".repeat(filled), " ".repeat(BAR_WIDTH - filled));
    let percent = match fraction {
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
    let mut text = format!("{bar} {percent}  {ops}  {rate}  {time}");
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

    #[test]
    fn terminal_redraws_in_place_and_keeps_the_bar_below_other_lines() {
        let mut display = ProgressDisplay::new(Vec::new(), DisplayStyle::Terminal);
        display.line("qmk: starting");
        display.progress(&report(100, 1000));
        display.line("qmk: cpu 2 busy");
        display.progress(&report(200, 2000));
        display.finish();
        let text = String::from_utf8(display.into_inner()).unwrap();
        let bar1 = render_progress(&report(100, 1000));
        let bar2 = render_progress(&report(200, 2000));
        assert_eq!(
            text,
            format!("qmk: starting\n{REDRAW}{bar1}{REDRAW}qmk: cpu 2 busy\n{bar1}{REDRAW}{bar2}\n")
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
