//! Runs one QEMU boot: streams its serial output line by line, writes the full log,
//! keeps the tail, enforces the timeout and turns the exit status into a verdict.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::paths;
use crate::serial_tail::{SerialTail, TAIL_LINES};
use crate::serial_text::printable;
use crate::verdict::BootVerdict;

/// How long to keep reading after killing QEMU on timeout. Bounded because a child
/// of QEMU (or of a fake QEMU script) may still hold the pipes open.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// One boot to run.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// The QEMU binary.
    pub qemu: &'a Path,
    /// Its arguments (see [`crate::boot_config::BootSpec::qemu_args`]).
    pub args: Vec<String>,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Where the full serial log goes (overwritten).
    pub log_path: PathBuf,
    /// Print the QEMU command line first.
    pub verbose: bool,
}

/// How a boot went.
#[derive(Debug)]
pub struct BootReport {
    /// Success, or why not.
    pub verdict: BootVerdict,
    /// The last [`TAIL_LINES`] lines of output (serial and QEMU's stderr), oldest first.
    pub tail: Vec<String>,
    /// The full log.
    pub log_path: PathBuf,
}

impl BootReport {
    /// Prints the verdict, the log's location and, if `show_tail`, the last lines.
    /// Called for failed boots; `show_tail` is false when the output was already
    /// streamed to the terminal.
    pub fn print_failure(&self, what: &str, show_tail: bool) {
        eprintln!("xtask: {what} failed: {}", self.verdict);
        if show_tail && !self.tail.is_empty() {
            eprintln!("xtask: last {} lines of serial output:", self.tail.len());
            for line in &self.tail {
                eprintln!("  | {line}");
            }
        }
        eprintln!("xtask: full serial log: {}", paths::shown(&self.log_path));
    }
}

/// Which QEMU output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The guest's serial port (`-serial stdio`).
    Serial,
    /// QEMU's own messages (errors, warnings).
    QemuStderr,
}

enum ReaderEvent {
    Line(Source, String),
    Closed,
}

/// Runs `boot`, calling `on_serial_line` for every serial line as it arrives.
/// QEMU's own stderr is echoed to our stderr. `Err` means QEMU could not be started
/// or its log could not be created; every way the guest can end is a [`BootVerdict`].
pub fn run_boot(boot: &Boot, mut on_serial_line: impl FnMut(&str)) -> Result<BootReport, String> {
    let command_line = shell_words(boot.qemu, &boot.args);
    if boot.verbose {
        eprintln!("xtask: $ {command_line}");
    }
    let mut log = SerialLog::create(&boot.log_path)?;
    log.write_line(&format!("# xtask: {command_line}"));

    let mut child = Command::new(boot.qemu)
        .args(&boot.args)
        // QEMU would put a terminal on stdin into raw mode; the guest reads no input.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", boot.qemu.display()))?;

    let (events, received) = mpsc::channel();
    // `take` cannot fail: both pipes were requested just above.
    spawn_reader(
        child.stdout.take().expect("piped"),
        Source::Serial,
        events.clone(),
    );
    spawn_reader(
        child.stderr.take().expect("piped"),
        Source::QemuStderr,
        events,
    );

    let mut tail = SerialTail::new(TAIL_LINES);
    let mut handle_line = |source: Source, text: String| {
        match source {
            Source::Serial => {
                log.write_line(&text);
                on_serial_line(&text);
            }
            Source::QemuStderr => {
                log.write_line(&format!("# qemu stderr: {text}"));
                eprintln!("{text}");
            }
        }
        tail.push(&text);
    };

    let deadline = Instant::now() + boot.timeout;
    let mut open_streams = 2;
    let mut timed_out = false;
    while open_streams > 0 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(remaining) {
            Ok(ReaderEvent::Line(source, text)) => handle_line(source, text),
            Ok(ReaderEvent::Closed) => open_streams -= 1,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        eprintln!(
            "xtask: no exit after {} s, killing QEMU",
            boot.timeout.as_secs()
        );
        // Fails only if QEMU already exited, which is fine.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for QEMU: {e}"))?;
    if timed_out {
        // Keep what was printed just before the kill.
        let drain_deadline = Instant::now() + DRAIN_AFTER_KILL;
        while open_streams > 0 {
            let remaining = drain_deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(remaining) {
                Ok(ReaderEvent::Line(source, text)) => handle_line(source, text),
                Ok(ReaderEvent::Closed) => open_streams -= 1,
                Err(_) => break,
            }
        }
    }

    let verdict = if timed_out {
        BootVerdict::TimedOut(boot.timeout)
    } else {
        BootVerdict::from_exit(status.code(), status.signal())
    };
    log.write_line(&format!("# xtask: {verdict}"));
    log.finish();
    Ok(BootReport {
        verdict,
        tail: tail.into_lines(),
        log_path: boot.log_path.clone(),
    })
}

/// The full log of one boot. A write error (disk full...) must not abandon a running
/// QEMU, so it is remembered and reported once at the end instead of returned.
struct SerialLog {
    path: PathBuf,
    file: BufWriter<File>,
    first_error: Option<std::io::Error>,
}

impl SerialLog {
    fn create(path: &Path) -> Result<SerialLog, String> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = File::create(path)
            .map(BufWriter::new)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(SerialLog {
            path: path.to_path_buf(),
            file,
            first_error: None,
        })
    }

    fn write_line(&mut self, line: &str) {
        if self.first_error.is_none() {
            if let Err(e) = writeln!(self.file, "{line}") {
                self.first_error = Some(e);
            }
        }
    }

    fn finish(mut self) {
        let result = match self.first_error.take() {
            Some(e) => Err(e),
            None => self.file.flush(),
        };
        if let Err(e) = result {
            eprintln!(
                "xtask: warning: the serial log {} is incomplete: {e}",
                self.path.display()
            );
        }
    }
}

/// Forwards each line of `stream` until EOF, lossily decoded and made printable
/// (which also drops the line ending).
fn spawn_reader(stream: impl Read + Send + 'static, source: Source, events: Sender<ReaderEvent>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = printable(&String::from_utf8_lossy(&buffer));
                    if events.send(ReaderEvent::Line(source, text)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = events.send(ReaderEvent::Closed);
    });
}

/// The command as one would type it in a shell (for `--verbose` and the log).
fn shell_words(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|arg| shell_quote(arg)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_for_display() {
        assert_eq!(
            shell_words(
                Path::new("/usr/bin/qemu"),
                &["-append".into(), "mode=test dmap=256".into(), "it's".into()]
            ),
            r"/usr/bin/qemu -append 'mode=test dmap=256' 'it'\''s'"
        );
        assert_eq!(shell_quote(""), "''");
    }
}
