//! End-to-end tests of the xtask binary against a fake QEMU: a shell script that
//! prints protocol lines and exits the way the real kernel would (33, 35, 0 for a
//! triple fault, a hang, a signal). `QMK_KERNEL` skips the kernel build and
//! `QMK_LOG_DIR` keeps the logs in a scratch directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The test list every fake kernel announces: two ordinary tests, one should_panic.
const LIST_OUTPUT: &str = "\
\x1b[2Jfirmware noise
qmk: booting
qmk: test a
qmk: test b
qmk: test p should_panic boom
qmk: listed 3";

const SUITE_OK: &str = "\
qmk: test a ... ok
qmk: test b ... ok
qmk: 2 passed, 0 failed";

const PANIC_OK: &str = "\
qmk: test p ... ok (panicked as expected: boom)
qmk: 1 passed, 0 failed";

/// A scratch directory with a fake QEMU whose behaviour per boot is given as shell
/// snippets. Every boot appends its QEMU arguments to `boots.txt`.
struct FakeMachine {
    dir: PathBuf,
}

/// Shell snippets run by the fake QEMU for each kind of boot.
struct Behaviour<'a> {
    run: &'a str,
    list: &'a str,
    suite: &'a str,
    panic_test: &'a str,
}

/// Prints `lines` then exits with `status`, as a shell snippet. Lines end in CR LF, as
/// serial consoles often send them, so every test also checks that the CR is dropped.
fn emit(lines: &str, status: i32) -> String {
    let mut script = String::new();
    for line in lines.lines() {
        script.push_str(&format!(
            "printf '%s\\r\\n' '{}'\n",
            line.replace('\'', "'\\''")
        ));
    }
    script.push_str(&format!("exit {status}\n"));
    script
}

impl FakeMachine {
    fn new(name: &str, behaviour: Behaviour) -> FakeMachine {
        let dir = std::env::temp_dir().join(format!("xtask-fake-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("qmk.elf"), b"\x7fELF fake").unwrap();
        let script = format!(
            r#"#!/bin/sh
# Fake qemu-system-x86_64 for xtask's tests.
echo "$*" >> "{dir}/boots.txt"
cmdline=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "-append" ]; then cmdline="$arg"; fi
  prev="$arg"
done
case " $cmdline " in
  *" mode=run "*)
{run}
    ;;
  *" mode=list "*)
{list}
    ;;
  *" test=p "*)
{panic_test}
    ;;
  *" mode=test "*)
{suite}
    ;;
esac
echo "fake qemu: unexpected command line: $cmdline" >&2
exit 1
"#,
            dir = dir.display(),
            run = behaviour.run,
            list = behaviour.list,
            suite = behaviour.suite,
            panic_test = behaviour.panic_test,
        );
        let qemu = dir.join("qemu");
        fs::write(&qemu, script).unwrap();
        fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).unwrap();
        FakeMachine { dir }
    }

    /// A machine whose kernel passes everything.
    fn healthy(name: &str) -> FakeMachine {
        FakeMachine::new(
            name,
            Behaviour {
                run: &emit("qmk: hello from the demo", 33),
                list: &emit(LIST_OUTPUT, 33),
                suite: &emit(SUITE_OK, 33),
                panic_test: &emit(PANIC_OK, 33),
            },
        )
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("QMK_QEMU", self.dir.join("qemu"))
            .env("QMK_KERNEL", self.dir.join("qmk.elf"))
            .env("QMK_LOG_DIR", self.dir.join("logs"))
            .output()
            .expect("xtask runs")
    }

    /// The QEMU argument lines of every boot so far.
    fn boots(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("boots.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join("logs").join(name))
            .unwrap_or_else(|e| panic!("log {name}: {e}"))
    }
}

impl Drop for FakeMachine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

#[test]
fn passing_suite() {
    let machine = FakeMachine::healthy("pass");
    let output = machine.xtask(&["test", "--kernel-only"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    assert!(out.contains("test a ... ok\ntest b ... ok\n"), "{out}");
    assert!(
        out.contains("test p ... ok (panicked as expected: boom)"),
        "{out}"
    );
    assert_eq!(last_line(&out), "3 passed, 0 failed");

    // One list boot, one suite boot, one boot for the should_panic test.
    let boots = machine.boots();
    assert_eq!(boots.len(), 3, "{boots:?}");
    assert!(
        boots[0].contains("-append mode=list dmap=256 "),
        "{}",
        boots[0]
    );
    assert!(
        boots[1].contains("-append mode=test dmap=256 "),
        "{}",
        boots[1]
    );
    assert!(boots[2].contains("-append mode=test test=p dmap=256 "));
    assert!(boots[0].contains(
        "-nographic -no-reboot -serial stdio -monitor none -nic none \
         -device isa-debug-exit,iobase=0xf4,iosize=4 -accel tcg,thread=multi -cpu max \
         -m 2048 -smp 1"
    ));

    // Full logs, one per boot.
    assert!(machine.log("list-cpus1.log").contains("qmk: listed 3"));
    assert!(machine
        .log("test-cpus1-suite.log")
        .contains("qmk: test b ... ok"));
    assert!(machine
        .log("test-cpus1-p.log")
        .contains("# xtask: the kernel reported success"));
}

#[test]
fn failing_test() {
    let suite = emit(
        "qmk: test a ... ok\nqmk: test b ... FAILED\nassertion failed: left == right\n\
         qmk: 1 passed, 1 failed",
        35,
    );
    let machine = FakeMachine::new(
        "fail",
        Behaviour {
            run: "",
            list: &emit(LIST_OUTPUT, 33),
            suite: &suite,
            panic_test: &emit(PANIC_OK, 33),
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("test b ... FAILED\n"), "{out}");
    assert!(out.contains("kernel failures:\n    b\n"), "{out}");
    assert_eq!(last_line(&out), "2 passed, 1 failed");
    assert!(err.contains("the kernel reported failure (QEMU exit status 35)"));
    assert!(err.contains("  | assertion failed: left == right"), "{err}");
    assert!(err.contains("test-cpus1-suite.log"), "{err}");
}

#[test]
fn panic_mid_suite_names_the_cause() {
    let suite = emit(
        "qmk: test a ... ok\nqmk: PANIC: PTE busy at src/window.rs:7 (test b)\nqmk: more detail",
        35,
    );
    let machine = FakeMachine::new(
        "panic",
        Behaviour {
            run: "",
            list: &emit(LIST_OUTPUT, 33),
            suite: &suite,
            panic_test: &emit(PANIC_OK, 33),
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "test b ... FAILED (no result: the boot ended first (the kernel reported failure \
             (QEMU exit status 35); the kernel said: PANIC: PTE busy at src/window.rs:7 (test b)))"
        ),
        "{out}"
    );
    assert_eq!(last_line(&out), "2 passed, 1 failed");
}

#[test]
fn hung_kernel_times_out() {
    let machine = FakeMachine::new(
        "timeout",
        Behaviour {
            run: "",
            list: &emit(LIST_OUTPUT, 33),
            // `exec` so that killing QEMU's process kills the hang itself.
            suite: "printf 'qmk: test a ... ok\\n'\nexec sleep 30",
            panic_test: &emit(PANIC_OK, 33),
        },
    );
    let started = Instant::now();
    let output = machine.xtask(&["test", "--kernel-only", "--timeout", "1"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("timed out after 1 s; xtask killed QEMU"),
        "{err}"
    );
    assert!(err.contains("  | qmk: test a ... ok"), "{err}");
    assert!(
        out.contains("test b ... FAILED (no result: the boot ended first (timed out"),
        "{out}"
    );
    assert_eq!(last_line(&out), "2 passed, 1 failed");
}

#[test]
fn triple_fault_reset() {
    let machine = FakeMachine::new(
        "reset",
        Behaviour {
            run: &emit("qmk: about to fault", 0),
            list: &emit(LIST_OUTPUT, 33),
            suite: &emit("qmk: test a ... ok\nqmk: test b ... ok", 0),
            panic_test: &emit(PANIC_OK, 33),
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("triple fault"), "{err}");
    // Both tests reported ok, so the crash itself is the counted failure.
    assert!(out.contains("test <boot suite> ... FAILED (QEMU exited with status 0"));
    assert_eq!(last_line(&out), "3 passed, 1 failed");

    let output = machine.xtask(&["run"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("qmk: about to fault"));
    assert!(stderr(&output).contains("triple fault"));
}

#[test]
fn killed_by_signal_and_qemu_errors() {
    let machine = FakeMachine::new(
        "signal",
        Behaviour {
            run: "echo 'qemu-system-x86_64: could not load kernel' >&2\nexit 1",
            list: "kill -9 $$",
            suite: "",
            panic_test: "",
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("QEMU was killed by signal 9"), "{err}");
    assert!(out.contains("test <list boot> ... FAILED"), "{out}");
    assert_eq!(last_line(&out), "0 passed, 1 failed");

    let output = machine.xtask(&["run"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err.contains("qemu-system-x86_64: could not load kernel"),
        "{err}"
    );
    assert!(err.contains("QEMU exited with status 1"), "{err}");
}

#[test]
fn cpu_sweep_runs_a_suite_per_count() {
    let machine = FakeMachine::healthy("sweep");
    let output = machine.xtask(&["test", "--kernel-only", "--cpus", "1,4", "--seed", "9"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("running 3 kernel tests on 4 CPUs (2 boots)"),
        "{out}"
    );
    assert!(
        out.contains("kernel suite, 1 CPU: 3 passed, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("kernel suite, 4 CPUs: 3 passed, 0 failed"),
        "{out}"
    );
    assert_eq!(last_line(&out), "6 passed, 0 failed");
    let boots = machine.boots();
    assert_eq!(boots.len(), 6);
    assert!(boots[..3].iter().all(|b| b.ends_with("-smp 1")));
    assert!(boots[3..].iter().all(|b| b.ends_with("-smp 4")));
    assert!(boots.iter().all(|b| b.contains("dmap=256 seed=9 ")));
    assert!(machine
        .log("test-cpus4-suite.log")
        .contains("qmk: test a ... ok"));
}

#[test]
fn filters() {
    let machine = FakeMachine::healthy("filter");
    let output = machine.xtask(&["test", "--kernel-only", "--test", "p"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(last_line(&stdout(&output)), "1 passed, 0 failed");
    assert!(machine.boots()[1].contains("-append mode=test test=p dmap=256"));

    let output = machine.xtask(&["test", "--kernel-only", "--test", "zzz"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no kernel test matches 'zzz'"));
}

#[test]
fn run_streams_and_succeeds() {
    let machine = FakeMachine::healthy("run");
    let output = machine.xtask(&["run", "--cpus", "2", "--icount", "--verbose"]);
    assert_eq!(output.status.code(), Some(2), "icount needs one CPU");
    let output = machine.xtask(&["run", "--icount", "--memory", "512", "--verbose"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(out, "qmk: hello from the demo\n");
    assert!(err.contains("-append 'mode=run dmap=256'"), "{err}");
    assert!(err.contains("run-cpus1.log"), "{err}");
    let boot = &machine.boots()[0];
    assert!(
        boot.contains("-accel tcg -cpu max -m 512 -smp 1 -icount shift=0"),
        "{boot}"
    );
}

#[test]
fn bad_command_lines_give_one_line_and_status_2() {
    let machine = FakeMachine::healthy("usage");
    for (args, message) in [
        (
            &["test", "--cpus", "0"][..],
            "xtask: --cpus 0: must be between 1 and 16\n",
        ),
        (
            &["run", "--bogus"][..],
            "xtask: unknown option '--bogus' for `cargo xtask run`\n",
        ),
        (
            &[][..],
            "xtask: missing command (expected build, run, test or help; see `cargo xtask help`)\n",
        ),
    ] {
        let output = machine.xtask(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&output), message);
        assert!(output.stdout.is_empty());
    }
    assert!(machine.boots().is_empty());
    let help = machine.xtask(&["help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).starts_with("usage: cargo xtask"));
}

#[test]
fn missing_qemu_override_is_reported() {
    let machine = FakeMachine::healthy("noqemu");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["run"])
        .env("QMK_QEMU", machine.dir.join("does-not-exist"))
        .env("QMK_KERNEL", machine.dir.join("qmk.elf"))
        .env("QMK_LOG_DIR", machine.dir.join("logs"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("QMK_QEMU="), "{err}");
    assert!(err.contains("not an executable file"), "{err}");
}
