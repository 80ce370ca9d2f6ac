//! End-to-end tests of the xtask binary against a fake QEMU: a shell script that
//! prints protocol lines and exits the way the real kernel would (33, 35, 0 for a
//! triple fault, a hang, a signal). `QMK_KERNEL` skips the kernel build,
//! `QMK_LOG_DIR` keeps the logs in a scratch directory and `QMK_OBJDUMP` points the
//! static check at a fake objdump that prints canned disassembly.

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

/// A workload that passes: progress, summary, verdict.
const WORKLOAD_OK: &str = "\
qmk: workload starting
qmk: progress done=250 total=500 bytes=1024000 elapsed_ms=1000 cpu0=60 cpu1=62 cpu2=64 cpu3=64
qmk: progress done=500 total=500 bytes=2048000 elapsed_ms=2000 cpu0=120 cpu1=126 cpu2=127 cpu3=127
qmk: summary bounce_prewrite=100
qmk: summary bounce_postread=100
qmk: summary zero=100
qmk: summary copy=100
qmk: summary scrub=50
qmk: summary interrupt_ops=50
qmk: summary pages_verified=500
qmk: summary bytes_verified=2048000
qmk: summary bytes_moved=2048000
qmk: summary direct_map_hits=50
qmk: summary window_maps=450
qmk: summary invalidations=450
qmk: summary mismatches=0
qmk: summary duration_ms=2000
qmk: summary cpus=4
qmk: summary threads=8
qmk: run ok";

/// Disassembly in objdump's layout in which both entry points keep the promises:
/// no locked instruction, one `invlpg` between them, a cold panic path not followed.
const OBJDUMP_OK: &str = "
qmk:     file format elf64-x86-64

Disassembly of section .text:

0000000000100000 <pmap_quick_enter_page>:
  100000:\tmov    QWORD PTR [rdi],rsi
  100003:\tinvlpg BYTE PTR [rsi]
  100006:\tjne    100040 <quickmap::rules::nesting_beyond_capacity>
  10000c:\tret

0000000000100010 <pmap_quick_remove_page>:
  100010:\tmov    QWORD PTR [rdi],0x0
  100017:\tcall   100030 <quickmap::percpu::release>
  10001c:\tret

0000000000100030 <quickmap::percpu::release>:
  100030:\tand    QWORD PTR gs:0x8,0xfffffffffffffffe
  100039:\tret

0000000000100040 <quickmap::rules::nesting_beyond_capacity>:
  100040:\tlock inc QWORD PTR [rip+0x100]
  100047:\tud2
";

/// A scratch directory with a fake QEMU whose behaviour per boot is given as shell
/// snippets. Every boot appends its QEMU arguments to `boots.txt`.
struct FakeMachine {
    dir: PathBuf,
}

/// Shell snippets run by the fake QEMU for each kind of boot, and the fake objdump's
/// output (`OBJDUMP_OK` when empty).
#[derive(Default)]
struct Behaviour<'a> {
    run: &'a str,
    list: &'a str,
    suite: &'a str,
    panic_test: &'a str,
    bench: &'a str,
    objdump: &'a str,
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
smp=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "-append" ]; then cmdline="$arg"; fi
  if [ "$prev" = "-smp" ]; then smp="$arg"; fi
  prev="$arg"
done
case " $cmdline " in
  *" icount=1 "*) icount=1 ;;
  *) icount=0 ;;
esac
case " $cmdline " in
  *" mode=run "*)
{run}
    ;;
  *" mode=bench "*)
{bench}
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
            bench = behaviour.bench,
        );
        let qemu = dir.join("qemu");
        fs::write(&qemu, script).unwrap();
        fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).unwrap();
        let objdump_text = if behaviour.objdump.is_empty() {
            OBJDUMP_OK
        } else {
            behaviour.objdump
        };
        fs::write(dir.join("objdump.txt"), objdump_text).unwrap();
        let objdump = dir.join("objdump");
        fs::write(
            &objdump,
            format!("#!/bin/sh\ncat '{}/objdump.txt'\n", dir.display()),
        )
        .unwrap();
        fs::set_permissions(&objdump, fs::Permissions::from_mode(0o755)).unwrap();
        FakeMachine { dir }
    }

    /// A machine whose kernel passes everything.
    fn healthy(name: &str) -> FakeMachine {
        FakeMachine::new(
            name,
            Behaviour {
                run: &emit(WORKLOAD_OK, 33),
                list: &emit(LIST_OUTPUT, 33),
                suite: &emit(SUITE_OK, 33),
                panic_test: &emit(PANIC_OK, 33),
                bench: &bench_script(|_, _| true),
                objdump: "",
            },
        )
    }

    fn xtask(&self, args: &[&str]) -> Output {
        // `test` boots 1, 2, 4 and 8 CPUs by default; these scenarios script one
        // boot per run, so they pin one CPU unless they choose the counts.
        let mut args = args.to_vec();
        if args.first() == Some(&"test") && !args.iter().any(|arg| arg.starts_with("--cpus")) {
            args.extend(["--cpus", "1"]);
        }
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env("QMK_QEMU", self.dir.join("qemu"))
            .env("QMK_KERNEL", self.dir.join("qmk.elf"))
            .env("QMK_LOG_DIR", self.dir.join("logs"))
            .env("QMK_OBJDUMP", self.dir.join("objdump"))
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
    // The static check comes first, with its figures.
    assert!(
        out.contains(
            "  pmap_quick_enter_page: 4 instructions in 1 function(s) (pmap_quick_enter_page \
             4); 0 locked; cold paths not followed: quickmap::rules::nesting_beyond_capacity\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  invlpg in the two together: 1 (at most 1)"),
        "{out}"
    );
    assert!(out.contains("test static-check ... ok\n"), "{out}");
    // The workload comes last: plain progress lines (stdout is not a terminal).
    assert!(
        out.contains("running the page workload: 10000 operations on 4 CPUs"),
        "{out}"
    );
    assert!(
        out.contains("[############            ]  50%  250/500 ops"),
        "{out}"
    );
    assert!(out.contains("test run-workload ... ok\n"), "{out}");
    assert_eq!(last_line(&out), "5 passed, 0 failed");

    // One list boot, one suite boot, one boot for the should_panic test, the workload.
    let boots = machine.boots();
    assert_eq!(boots.len(), 4, "{boots:?}");
    assert!(
        boots[3].contains("-append mode=run dmap=256 ops=10000 ") && boots[3].ends_with("-smp 4"),
        "{}",
        boots[3]
    );
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
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("test b ... FAILED\n"), "{out}");
    assert!(out.contains("kernel failures:\n    b\n"), "{out}");
    // a, p and the static check pass.
    assert_eq!(last_line(&out), "3 passed, 1 failed");
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
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "test b ... FAILED (no result: the boot ended first (the kernel reported failure \
             (QEMU exit status 35); the kernel said: PANIC: PTE busy at src/window.rs:7 (test b)))"
        ),
        "{out}"
    );
    assert_eq!(last_line(&out), "3 passed, 1 failed");
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
            ..Behaviour::default()
        },
    );
    let started = Instant::now();
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload", "--timeout", "1"]);
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
    assert_eq!(last_line(&out), "3 passed, 1 failed");
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
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("triple fault"), "{err}");
    // Both tests reported ok, so the crash itself is the counted failure.
    assert!(out.contains("test <boot suite> ... FAILED (QEMU exited with status 0"));
    // The workload crashed too: a failed result of its own.
    assert!(
        out.contains("test run-workload ... FAILED (QEMU exited with status 0"),
        "{out}"
    );
    assert_eq!(last_line(&out), "4 passed, 2 failed");

    let output = machine.xtask(&["run"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("qmk: about to fault"));
    let err = stderr(&output);
    assert!(
        err.contains("xtask: run failed: QEMU exited with status 0"),
        "{err}"
    );
    assert!(err.contains("triple fault"), "{err}");
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
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("QEMU was killed by signal 9"), "{err}");
    assert!(out.contains("test <list boot> ... FAILED"), "{out}");
    assert_eq!(last_line(&out), "1 passed, 1 failed");

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
    // Two suites of 3, the static check, the workload.
    assert_eq!(last_line(&out), "8 passed, 0 failed");
    let boots = machine.boots();
    assert_eq!(boots.len(), 7);
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
fn run_shows_progress_and_a_summary() {
    let machine = FakeMachine::healthy("run");
    let output = machine.xtask(&["run", "--ops", "500", "--seed", "3", "--verbose"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    // Defaults: 4 CPUs, 2048 MiB, a 64 MiB direct map; ops= and seed= passed on.
    assert!(
        err.contains("-append 'mode=run dmap=64 seed=3 ops=500'"),
        "{err}"
    );
    assert!(machine.boots()[0].ends_with("-m 2048 -smp 4"));
    // Kernel lines stream through; progress is redrawn as plain lines without a TTY;
    // summary lines become the table.
    assert!(out.starts_with("qmk: workload starting\n"), "{out}");
    assert!(
        out.contains(
            "[############            ]  50%  250/500 ops  250 ops/s  1.0 MB/s  1.0 s  \
             per CPU: 60 62 64 64\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("[########################] 100%  500/500 ops"),
        "{out}"
    );
    assert!(!out.contains("qmk: progress"), "{out}");
    assert!(!out.contains("qmk: summary"), "{out}");
    assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
    assert!(out.contains("qmk: run ok\n"), "{out}");
    assert!(
        out.contains("workload summary: 4 CPU(s), 8 thread(s)\n"),
        "{out}"
    );
    assert!(
        out.contains("  direct-map hits                    50    10.0%\n"),
        "{out}"
    );
    assert!(
        out.contains("  window maps                       450    90.0%\n"),
        "{out}"
    );
    assert!(
        out.contains("  throughput             250 ops/s, 1.0 MB/s\n"),
        "{out}"
    );
    assert!(err.contains("xtask: run ok; serial log: "), "{err}");
    assert!(machine
        .log("run-cpus4.log")
        .contains("qmk: summary threads=8"));

    let output = machine.xtask(&["run", "--icount", "--cpus", "1", "--secs", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let boot = &machine.boots()[1];
    assert!(boot.contains("-append mode=run dmap=64 secs=2 "), "{boot}");
    assert!(
        boot.contains("-accel tcg -cpu max -m 2048 -smp 1 -icount shift=0"),
        "{boot}"
    );
}

#[test]
fn run_fails_on_mismatch_and_on_kernel_errors() {
    let mismatching = WORKLOAD_OK
        .replace(
            "qmk: summary scrub=50",
            "qmk: mismatch kind=copy page=0x7f000 cpu=1 thread=3 offset=0x10 expected=0xaa \
             found=0x00\nqmk: summary scrub=50",
        )
        .replace("mismatches=0", "mismatches=1")
        .replace("qmk: run ok", "qmk: run FAILED: 1 mismatch");
    let machine = FakeMachine::new(
        "mismatch",
        Behaviour {
            run: &emit(&mismatching, 35),
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["run"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains(
            "!!! MISMATCH: kind=copy page=0x7f000 cpu=1 thread=3 offset=0x10 expected=0xaa \
             found=0x00\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  mismatches                          1\n"),
        "{out}"
    );
    assert_eq!(
        last_line(&err),
        "xtask: run failed: the kernel reported `run FAILED: 1 mismatch`"
    );

    let machine = FakeMachine::new(
        "noworkload",
        Behaviour {
            run: &emit("qmk: error: unknown boot option 'ops'", 35),
            list: &emit(LIST_OUTPUT, 33),
            suite: &emit(SUITE_OK, 33),
            panic_test: &emit(PANIC_OK, 33),
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["run", "--ops", "5"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_line(&stderr(&output)),
        "xtask: run failed: the kernel reported failure (QEMU exit status 35); the kernel \
         said: error: unknown boot option 'ops'"
    );
    // In `test`, the same is one failed result, and --no-workload leaves it out.
    let output = machine.xtask(&["test", "--kernel-only"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("test run-workload ... FAILED (the kernel reported failure"),
        "{out}"
    );
    assert_eq!(last_line(&out), "4 passed, 1 failed");
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(last_line(&stdout(&output)), "4 passed, 0 failed");
}

#[test]
fn static_check_failures_are_one_result() {
    let locked = OBJDUMP_OK.replace(
        "100030:\tand    QWORD PTR gs:0x8,0xfffffffffffffffe",
        "100030:\tlock and QWORD PTR [rip+0x8],0xfffffffffffffffe",
    );
    let machine = FakeMachine::new(
        "locked",
        Behaviour {
            list: &emit(LIST_OUTPUT, 33),
            suite: &emit(SUITE_OK, 33),
            panic_test: &emit(PANIC_OK, 33),
            objdump: &locked,
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "test static-check ... FAILED (pmap_quick_remove_page: locked instruction in \
             quickmap::percpu::release at 0x100030: lock and QWORD PTR [rip+0x8],\
             0xfffffffffffffffe)"
        ),
        "{out}"
    );
    assert_eq!(last_line(&out), "3 passed, 1 failed");

    let machine = FakeMachine::new(
        "nosymbols",
        Behaviour {
            list: &emit(LIST_OUTPUT, 33),
            suite: &emit(SUITE_OK, 33),
            panic_test: &emit(PANIC_OK, 33),
            objdump: "0000000000100000 <kernel_main>:\n  100000:\tret\n",
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "test static-check ... FAILED (symbol `pmap_quick_enter_page` not found in the \
             kernel"
        ),
        "{out}"
    );
}

/// A fake bench kernel: the four boots of a default `cargo xtask bench`, with
/// figures that meet every target. `keep(variant, cpus)` drops a variant's line
/// when false.
fn bench_script(keep: impl Fn(&str, u32) -> bool) -> String {
    const VARIANTS: [&str; 11] = [
        "direct-raw",
        "quickmap-window",
        "quickmap-direct",
        "quickmap-nested2",
        "quickmap-nested4",
        "global-lock-window",
        "shootdown-map",
        "zero-page-quickmap",
        "zero-page-direct",
        "copy-page-quickmap",
        "copy-page-direct",
    ];
    let mut script = String::from("case \"$smp:$icount\" in\n");
    for (cpus, icount) in [(1, 1), (1, 0), (2, 0), (4, 0)] {
        let pairs = 1000 * cpus;
        let mut lines = format!("qmk: bench-info cpus={cpus} icount={icount} tsc_hz=1000000000\n");
        if icount == 1 {
            lines.push_str("qmk: bench overhead ticks_per_pair=5\n");
        }
        for variant in VARIANTS.iter().filter(|v| keep(v, cpus)) {
            // icount: instructions per pair (+5 of loop); else ticks per CPU-share.
            let (ticks, ipis, locks) = match (*variant, icount) {
                ("direct-raw", 1) => (20 * 1000, 0, 0),
                ("quickmap-window", 1) => (65 * 1000, 0, 0),
                ("quickmap-direct", 1) => (28 * 1000, 0, 0),
                (_, 1) => (300 * 1000, 0, 0),
                ("global-lock-window", _) => (1_000_000 * u64::from(cpus * cpus * 2), 0, pairs),
                ("shootdown-map", _) => (
                    1_000_000 * u64::from(cpus * cpus * 3),
                    pairs * (cpus - 1),
                    0,
                ),
                _ => (1_000_000, 0, 0),
            };
            lines.push_str(&format!(
                "qmk: bench {variant} cpus={cpus} pairs={pairs} ticks={ticks} invalidations={pairs} \
                 ipis={ipis} locks={locks} pte_writes={}\n",
                2 * pairs
            ));
        }
        lines.push_str("qmk: bench done");
        script.push_str(&format!("  {cpus}:{icount})\n{}    ;;\n", emit(&lines, 33)));
    }
    script.push_str("esac\n");
    script
}

#[test]
fn bench_boots_reports_and_writes_files() {
    let machine = FakeMachine::healthy("bench");
    let out_dir = machine.dir.join("out");
    let output = machine.xtask(&[
        "bench",
        "--pairs",
        "1000",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    let boots = machine.boots();
    assert_eq!(boots.len(), 4, "{boots:?}");
    assert!(
        boots[0].contains("-append 'mode=bench dmap=64 pairs=1000 icount=1'")
            || boots[0].contains("-append mode=bench dmap=64 pairs=1000 icount=1 "),
        "{}",
        boots[0]
    );
    assert!(boots[0].ends_with("-smp 1 -icount shift=0"), "{}", boots[0]);
    assert!(boots[0].contains("-accel tcg "), "{}", boots[0]);
    for (boot, cpus) in boots[1..].iter().zip([1, 2, 4]) {
        assert!(
            boot.contains("-append mode=bench dmap=64 pairs=1000 -nographic"),
            "{boot}"
        );
        assert!(boot.ends_with(&format!("-smp {cpus}")), "{boot}");
        assert!(boot.contains("-accel tcg,thread=multi"), "{boot}");
    }
    // Window: 65 - 5 overhead = 60 instructions, 15 of them the touch.
    assert!(
        out.contains(
            "  quickmap-window             60.0       1.000      0.000       0.000       2.000\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  shootdown-map              295.0       1.000      3.000       0.000       2.000\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  quickmap-window          1.00M     2.00M     4.00M    2.00    4.00     1.00     \
             1.00     1.00\n"
        ),
        "{out}"
    );
    assert!(out.contains("targets: 10 of 10 met\n"), "{out}");
    assert!(
        out.contains(
            "  met     quickmap-window: at most 60 instructions per pair beyond the touch \
             (direct-raw): measured 45.0 (quickmap-window 60.0 - direct-raw 15.0)\n"
        ),
        "{out}"
    );
    let json = fs::read_to_string(out_dir.join("bench.json")).unwrap();
    assert!(json.contains("\"schema\": \"quickmap-bench/1\""), "{json}");
    assert!(json.contains("\"label\": \"bench-icount-cpus1\""), "{json}");
    assert!(json.contains("\"kernel_cmdline\": \"mode=bench dmap=64 pairs=1000\""));
    assert_eq!(json.matches("\"status\": \"met\"").count(), 10);
    let svg = fs::read_to_string(out_dir.join("throughput.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 11);
    assert!(machine.log("bench-cpus4.log").contains("qmk: bench done"));
}

#[test]
fn bench_fails_on_a_missing_variant_or_a_failed_boot() {
    let missing = bench_script(|variant, cpus| !(variant == "shootdown-map" && cpus == 2));
    let machine = FakeMachine::new(
        "benchmissing",
        Behaviour {
            bench: &missing,
            ..Behaviour::default()
        },
    );
    let out_dir = machine.dir.join("out");
    let output = machine.xtask(&["bench", "--out", out_dir.to_str().unwrap()]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("bench-cpus2: variant(s) missing: shootdown-map"),
        "{err}"
    );
    // What could be measured is still reported, without the failed boot.
    assert!(out.contains("targets: "), "{out}");
    assert!(out_dir.join("bench.json").is_file());

    let machine = FakeMachine::new(
        "benchcrash",
        Behaviour {
            bench: &emit("qmk: PANIC: oops at bench.rs:1", 35),
            ..Behaviour::default()
        },
    );
    let output = machine.xtask(&["bench", "--cpus", "2", "--out", out_dir.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "bench-icount-cpus1: the kernel reported failure (QEMU exit status 35); the kernel \
             said: PANIC: oops at bench.rs:1"
        ),
        "{err}"
    );
    assert_eq!(
        last_line(&err),
        "xtask: the icount boot failed, so no instruction counts; nothing to report"
    );
    assert_eq!(machine.boots().len(), 2);
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
            "xtask: missing command (expected build, run, test, bench or help; see `cargo xtask \
             help`)\n",
        ),
        (
            &["run", "--ops", "5", "--secs", "5"][..],
            "xtask: --ops and --secs exclude each other (give a number of operations or a \
             duration, not both)\n",
        ),
        (
            &["run", "--dmap", "33"][..],
            "xtask: --dmap 33: must be even (the kernel maps it with 2 MiB pages)\n",
        ),
        (
            &["bench", "--pairs", "0"][..],
            "xtask: --pairs 0: must be at least 1\n",
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
