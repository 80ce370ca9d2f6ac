//! End-to-end tests of the xtask binary against a fake QEMU: a shell script that
//! prints protocol lines and exits the way the real kernel would (33, 35, 0 for a
//! triple fault, a hang, a signal). `QMK_KERNEL` and `QMK_LEAN_KERNEL` skip the kernel
//! builds,
//! `QMK_LOG_DIR` keeps the logs in a scratch directory and `QMK_OBJDUMP` points the
//! static check at a fake objdump that prints canned disassembly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
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

/// Disassembly in objdump's layout in which all four entry points keep the promises:
/// no locked instruction, the strict pair's one `invlpg` in its remove, the deferred
/// pair's only in the uncached remove's slow path, the flush's CR3 write in its slow
/// path, a cold panic path not followed.
const OBJDUMP_OK: &str = "
qmk:     file format elf64-x86-64

Disassembly of section .text:

0000000000100000 <pmap_quick_enter_page>:
  100000:\tmov    QWORD PTR [rdi],rsi
  100003:\tjne    100040 <quickmap::rules::nesting_beyond_capacity>
  100009:\tret

0000000000100010 <pmap_quick_remove_page>:
  100010:\tmov    QWORD PTR [rdi],0x0
  100017:\tinvlpg BYTE PTR [rsi]
  10001a:\tcall   100030 <quickmap::percpu::release>
  10001f:\tret

0000000000100030 <quickmap::percpu::release>:
  100030:\tand    QWORD PTR gs:0x8,0xfffffffffffffffe
  100039:\tret

0000000000100040 <quickmap::rules::nesting_beyond_capacity>:
  100040:\tlock inc QWORD PTR [rip+0x100]
  100047:\tud2

0000000000100050 <qmk_deferred_enter_page>:
  100050:\tje     100060 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows>
  100056:\tmov    QWORD PTR [rdi],rsi
  100059:\tret

0000000000100060 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows>:
  100060:\tmov    rax,cr3
  100063:\tmov    cr3,rax
  100066:\tret

0000000000100070 <qmk_deferred_remove_page>:
  100070:\tjne    100080 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached>
  100076:\tjmp    100030 <quickmap::percpu::release>

0000000000100080 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached>:
  100080:\tinvlpg BYTE PTR [rsi]
  100083:\tret

0000000000100090 <qmk_local_enter_page>:
  100090:\tmov    QWORD PTR [rdi],rsi
  100093:\tret

00000000001000a0 <qmk_local_remove_page>:
  1000a0:\tmov    QWORD PTR [rdi],0x0
  1000a7:\tinvlpg BYTE PTR [rsi]
  1000aa:\tret

00000000001000b0 <qmk_local_switch_out>:
  1000b0:\tjne    1000c0 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>
  1000b6:\tret

00000000001000c0 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>:
  1000c0:\tinvlpg BYTE PTR [rsi]
  1000c3:\tret

00000000001000d0 <qmk_local_switch_in>:
  1000d0:\tjne    1000e0 <quickmap::local::LocalQuickMap<P,M,_>::cold_restore_local_slots>
  1000d6:\tret

00000000001000e0 <quickmap::local::LocalQuickMap<P,M,_>::cold_restore_local_slots>:
  1000e0:\tmov    QWORD PTR [rcx],rax
  1000e3:\tret
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

impl Behaviour<'static> {
    /// A kernel whose list, suite and should_panic boots all pass, and nothing else
    /// scripted: scenarios override the boot they are about.
    fn passing_tests() -> Behaviour<'static> {
        // A behaviour borrows its snippets, so these shared ones live for the whole
        // test binary.
        static SNIPPETS: OnceLock<[String; 3]> = OnceLock::new();
        let [list, suite, panic_test] = SNIPPETS.get_or_init(|| {
            [
                emit(LIST_OUTPUT, 33),
                emit(SUITE_OK, 33),
                emit(PANIC_OK, 33),
            ]
        });
        Behaviour {
            list,
            suite,
            panic_test,
            ..Behaviour::default()
        }
    }
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
        fs::write(dir.join("qmk-lean.elf"), b"\x7fELF fake lean").unwrap();
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
                bench: &bench_script(|_, _| true),
                ..Behaviour::passing_tests()
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
        // `test` runs both architectures by default; the scenarios script x86_64 boots
        // unless they choose.
        if args.first() == Some(&"test") && !args.iter().any(|arg| arg.starts_with("--arch")) {
            args.extend(["--arch", "x86_64"]);
        }
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env("QMK_QEMU", self.dir.join("qemu"))
            .env("QMK_KERNEL", self.dir.join("qmk.elf"))
            .env("QMK_LEAN_KERNEL", self.dir.join("qmk-lean.elf"))
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
            "  pmap_quick_enter_page: hot path: 3 instructions in 1 function(s) \
             (pmap_quick_enter_page 3); 0 invlpg, expected exactly 0; 0 CR3 write(s), \
             expected exactly 0; 0 locked; cold panic paths not followed: \
             quickmap::rules::nesting_beyond_capacity\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  qmk_deferred_remove_page: cold path quickmap::deferred::<impl \
             quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached: 2 instructions in \
             1 function(s)"
        ),
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
    // The workload again on the deferred instance; its counts (here missing from the
    // fake kernel's summary) go into its result line and the summary's title.
    assert!(
        out.contains(
            "running the page workload: 10000 operations on 4 CPUs, deferred invalidation"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "test run-workload-deferred ... ok (? full flushes, ? window reuses, 0 mismatches)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "workload, x86_64 (deferred: ? full flushes, ? window reuses, 0 mismatches): 2 passed, 0 failed\n"
        ),
        "{out}"
    );
    assert_eq!(last_line(&out), "6 passed, 0 failed");

    // One list boot, one suite boot, one boot for the should_panic test, the workload
    // with each invalidation.
    let boots = machine.boots();
    assert_eq!(boots.len(), 5, "{boots:?}");
    assert!(
        boots[3].contains("-append mode=run dmap=256 ops=10000 ") && boots[3].ends_with("-smp 4"),
        "{}",
        boots[3]
    );
    assert!(
        boots[4].contains("-append mode=run dmap=256 ops=10000 invalidation=deferred ")
            && boots[4].ends_with("-smp 4"),
        "{}",
        boots[4]
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
            suite: &suite,
            ..Behaviour::passing_tests()
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
            suite: &suite,
            ..Behaviour::passing_tests()
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
            // `exec` so that killing QEMU's process kills the hang itself.
            suite: "printf 'qmk: test a ... ok\\n'\nexec sleep 30",
            ..Behaviour::passing_tests()
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
            suite: &emit("qmk: test a ... ok\nqmk: test b ... ok", 0),
            ..Behaviour::passing_tests()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("triple fault"), "{err}");
    // Both tests reported ok, so the crash itself is the counted failure.
    assert!(out.contains("test <boot suite> ... FAILED (QEMU exited with status 0"));
    // The workload crashed too, in both invalidation modes: a failed result each.
    assert!(
        out.contains("test run-workload ... FAILED (QEMU exited with status 0"),
        "{out}"
    );
    assert!(
        out.contains("test run-workload-deferred ... FAILED (QEMU exited with status 0"),
        "{out}"
    );
    assert_eq!(last_line(&out), "4 passed, 3 failed");

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
        out.contains("running 3 kernel tests on 4 x86_64 CPUs (2 boots)"),
        "{out}"
    );
    assert!(
        out.contains("kernel suite, x86_64, 1 CPU: 3 passed, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("kernel suite, x86_64, 4 CPUs: 3 passed, 0 failed"),
        "{out}"
    );
    // Two suites of 3, the static check, the workload in two invalidation modes.
    assert_eq!(last_line(&out), "9 passed, 0 failed");
    let boots = machine.boots();
    assert_eq!(boots.len(), 8);
    assert!(boots[..3].iter().all(|b| b.ends_with("-smp 1")));
    assert!(boots[3..].iter().all(|b| b.ends_with("-smp 4")));
    assert!(boots.iter().all(|b| b.contains("dmap=256 seed=9 ")));
    assert!(machine
        .log("test-cpus4-suite.log")
        .contains("qmk: test a ... ok"));
}

#[test]
fn both_architectures_by_default() {
    let machine = FakeMachine::healthy("arches");
    let output = machine.xtask(&["test", "--kernel-only", "--arch", "all", "--test", "a"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    assert!(out.contains("kernel part on x86_64\n"), "{out}");
    assert!(out.contains("kernel part on aarch64\n"), "{out}");
    assert!(
        out.contains("kernel suite, x86_64, 1 CPU: 2 passed, 0 failed\n"),
        "{out}"
    );
    assert!(
        out.contains("kernel suite, aarch64, 1 CPU: 2 passed, 0 failed\n"),
        "{out}"
    );
    assert_eq!(last_line(&out), "4 passed, 0 failed");
    let boots = machine.boots();
    assert_eq!(boots.len(), 4, "a list and a test boot per architecture");
    assert!(boots[..2].iter().all(|b| b.contains("isa-debug-exit")));
    assert!(boots[2..].iter().all(
        |b| b.contains("-cpu cortex-a72") && b.ends_with("-M virt,gic-version=3 -semihosting")
    ));
    assert!(machine
        .log("aarch64-test-cpus1-a.log")
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

    // --invalidation deferred: one more kernel word, and a log of its own.
    let output = machine.xtask(&["run", "--invalidation", "deferred", "--ops", "500"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains(", deferred invalidation (kernel command line: "),
        "{err}"
    );
    let boot = &machine.boots()[2];
    assert!(
        boot.contains("-append mode=run dmap=64 ops=500 invalidation=deferred "),
        "{boot}"
    );
    assert!(machine
        .log("run-cpus4-deferred.log")
        .contains("qmk: run ok"));
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
            ..Behaviour::passing_tests()
        },
    );
    let output = machine.xtask(&["run", "--ops", "5"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_line(&stderr(&output)),
        "xtask: run failed: the kernel reported failure (QEMU exit status 35); the kernel \
         said: error: unknown boot option 'ops'"
    );
    // In `test`, the same is one failed result per invalidation mode, and
    // --no-workload leaves them out.
    let output = machine.xtask(&["test", "--kernel-only"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("test run-workload ... FAILED (the kernel reported failure"),
        "{out}"
    );
    assert!(
        out.contains("test run-workload-deferred ... FAILED (the kernel reported failure"),
        "{out}"
    );
    assert_eq!(last_line(&out), "4 passed, 2 failed");
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(last_line(&stdout(&output)), "4 passed, 0 failed");
}

/// Runs the kernel tests (no workload) on a machine whose tests all pass but whose
/// fake objdump prints `objdump`, and returns stdout after checking that the run
/// failed: the static check is the only thing that can fail it.
fn failed_static_check(name: &str, objdump: &str) -> String {
    let machine = FakeMachine::new(
        name,
        Behaviour {
            objdump,
            ..Behaviour::passing_tests()
        },
    );
    let output = machine.xtask(&["test", "--kernel-only", "--no-workload"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    out
}

#[test]
fn static_check_failures_are_one_result() {
    let locked = OBJDUMP_OK.replace(
        "100030:\tand    QWORD PTR gs:0x8,0xfffffffffffffffe",
        "100030:\tlock and QWORD PTR [rip+0x8],0xfffffffffffffffe",
    );
    let out = failed_static_check("locked", &locked);
    assert!(
        out.contains(
            "test static-check ... FAILED (pmap_quick_remove_page: locked instruction in \
             quickmap::percpu::release at 0x100030: lock and QWORD PTR [rip+0x8],\
             0xfffffffffffffffe; qmk_deferred_remove_page: locked instruction in \
             quickmap::percpu::release at 0x100030: lock and QWORD PTR [rip+0x8],\
             0xfffffffffffffffe)"
        ),
        "{out}"
    );
    assert_eq!(last_line(&out), "3 passed, 1 failed");

    // The strict remove without its invlpg: the check is exact, not an upper bound.
    let no_invlpg = OBJDUMP_OK.replace("100017:\tinvlpg BYTE PTR [rsi]", "100017:\tnop");
    let out = failed_static_check("noinvlpg", &no_invlpg);
    assert!(
        out.contains(
            "test static-check ... FAILED (pmap_quick_remove_page: hot path has 0 invlpg, \
             expected exactly 1)"
        ),
        "{out}"
    );

    let out = failed_static_check(
        "nosymbols",
        "0000000000100000 <kernel_main>:\n  100000:\tret\n",
    );
    assert!(
        out.contains(
            "test static-check ... FAILED (symbol `pmap_quick_enter_page` not found in the \
             kernel"
        ),
        "{out}"
    );

    // The deferred pair dropped by the linker (nothing referenced it).
    let strict_only = &OBJDUMP_OK[..OBJDUMP_OK.find("0000000000100050 <qmk_deferred").unwrap()];
    let out = failed_static_check("nodeferred", strict_only);
    assert!(
        out.contains(
            "test static-check ... FAILED (symbol `qmk_deferred_enter_page` not found in the \
             kernel: it must be exported with #[no_mangle] and referenced"
        ),
        "{out}"
    );
    assert!(
        out.contains("  pmap_quick_remove_page: hot path: "),
        "the strict pair is still checked: {out}"
    );
}

/// A fake bench kernel: the five boots of a default `cargo xtask bench` (the lean
/// kernel is told apart by its ELF's name), with figures that meet every target.
/// `keep(variant, cpus)` drops a variant's line when false.
fn bench_script(keep: impl Fn(&str, u32) -> bool) -> String {
    const VARIANTS: [&str; 20] = [
        "direct-raw",
        "quickmap-window",
        "quickmap-direct",
        "quickmap-guard",
        "quickmap-guard-direct",
        "quickmap-nested2",
        "quickmap-nested4",
        "deferred-window",
        "deferred-pool",
        "global-lock-window",
        "shootdown-map",
        "zero-page-quickmap",
        "zero-page-direct",
        "copy-page-quickmap",
        "copy-page-direct",
        "local-window",
        "local-guard",
        "local-switch0",
        "local-switch1",
        "local-switch4",
    ];
    /// Variants whose invalidations, entry writes, flushes and reuses only quickmap's
    /// statistics count (`-` in the lean build).
    const BASELINES: [&str; 5] = [
        "direct-raw",
        "global-lock-window",
        "shootdown-map",
        "zero-page-direct",
        "copy-page-direct",
    ];
    let mut script = String::from(
        "case \"$*\" in *qmk-lean.elf*) lean=1 ;; *) lean=0 ;; esac\n\
         case \"$smp:$icount:$lean\" in\n",
    );
    for (cpus, icount, lean) in [(1, 1, 0), (1, 1, 1), (1, 0, 0), (2, 0, 0), (4, 0, 0)] {
        let pairs = 1000 * cpus;
        let build = if lean == 1 { "lean" } else { "checked" };
        let mut lines = format!(
            "qmk: bench-info cpus={cpus} icount={icount} tsc_hz=1000000000 build={build}\n"
        );
        if icount == 1 {
            lines.push_str("qmk: bench overhead ticks_per_pair=5\n");
        }
        for variant in VARIANTS.iter().filter(|v| keep(v, cpus)) {
            // icount: instructions per pair (+5 of loop); else ticks per CPU-share.
            let (ticks, ipis, locks) = match (*variant, icount, lean) {
                ("direct-raw", 1, _) => (20 * 1000, 0, 0),
                ("quickmap-window", 1, 0) => (65 * 1000, 0, 0),
                ("quickmap-direct", 1, 0) => (28 * 1000, 0, 0),
                ("quickmap-guard", 1, 1) => (50 * 1000, 0, 0),
                ("quickmap-guard-direct", 1, 1) => (24 * 1000, 0, 0),
                ("local-guard", 1, 0) => (100 * 1000, 0, 0),
                ("local-switch0", 1, 0) => (1000 * 1000, 0, 0),
                ("local-switch4", 1, 0) => (1200 * 1000, 0, 0),
                (_, 1, _) => (300 * 1000, 0, 0),
                ("deferred-window", _, _) => (250_000, 0, 0),
                ("global-lock-window", _, _) => (1_000_000 * u64::from(cpus * cpus * 2), 0, pairs),
                ("shootdown-map", _, _) => (
                    1_000_000 * u64::from(cpus * cpus * 3),
                    pairs * (cpus - 1),
                    0,
                ),
                _ => (1_000_000, 0, 0),
            };
            let (invalidations, pte_writes, flushes, reuses) = match *variant {
                "deferred-window" => (0, pairs, pairs / 32, 0),
                "deferred-pool" => (0, 0, 0, pairs),
                _ => (pairs, 2 * pairs, 0, 0),
            };
            let counted = |count: u32| {
                if lean == 1 && !BASELINES.contains(variant) {
                    "-".to_string()
                } else {
                    count.to_string()
                }
            };
            lines.push_str(&format!(
                "qmk: bench {variant} cpus={cpus} pairs={pairs} ticks={ticks} invalidations={} \
                 ipis={ipis} locks={locks} pte_writes={} full_flushes={} reuses={}\n",
                counted(invalidations),
                counted(pte_writes),
                counted(flushes),
                counted(reuses)
            ));
        }
        lines.push_str("qmk: bench done");
        script.push_str(&format!(
            "  {cpus}:{icount}:{lean})\n{}    ;;\n",
            emit(&lines, 33)
        ));
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
    assert_eq!(boots.len(), 5, "{boots:?}");
    for (boot, elf) in boots[..2].iter().zip(["qmk.elf", "qmk-lean.elf"]) {
        assert!(boot.contains(&format!("/{elf} -append")), "{boot}");
        assert!(
            boot.contains("-append 'mode=bench dmap=64 pairs=1000 icount=1'")
                || boot.contains("-append mode=bench dmap=64 pairs=1000 icount=1 "),
            "{boot}"
        );
        assert!(boot.ends_with("-smp 1 -icount shift=0"), "{boot}");
        assert!(boot.contains("-accel tcg "), "{boot}");
    }
    for (boot, cpus) in boots[2..].iter().zip([1, 2, 4]) {
        assert!(boot.contains("/qmk.elf -append"), "{boot}");
        assert!(
            boot.contains("-append mode=bench dmap=64 pairs=1000 -nographic"),
            "{boot}"
        );
        assert!(boot.ends_with(&format!("-smp {cpus}")), "{boot}");
        assert!(boot.contains("-accel tcg,thread=multi"), "{boot}");
    }
    assert!(
        err.contains("xtask: bench boot 2/5: 1 CPU, icount (instruction counts), lean kernel\n"),
        "{err}"
    );
    // Window: 65 - 5 overhead = 60 instructions, 15 of them the touch. The columns:
    // instr/pair, inval/pair, flush/pair, PTEw/pair, reuse/pair, IPIs/pair, locks/pair.
    for row in [
        "  quickmap-window              60.0     1.0000     0.0000    2.0000     0.0000     0.000      0.000\n",
        "  shootdown-map               295.0     1.0000     0.0000    2.0000     0.0000     3.000      0.000\n",
        "  deferred-window             295.0     0.0000     0.0312    1.0000     0.0000     0.000      0.000\n",
    ] {
        assert!(out.contains(row), "{row}\n{out}");
    }
    // The lean build, with instructions saved against the checked one: quickmap's
    // events are not counted, the baselines' are.
    for row in [
        "  quickmap-guard               45.0      250.0          -          -         -          -     0.000      0.000\n",
        "  global-lock-window          295.0        0.0     1.0000     0.0000    2.0000     0.0000     0.000      0.000\n",
    ] {
        assert!(out.contains(row), "{row}\n{out}");
    }
    assert!(
        out.contains(
            "  quickmap-window            1.00M     2.00M     4.00M    2.00    4.00     1.00     \
             1.00     1.00\n"
        ),
        "{out}"
    );
    assert!(out.contains("targets: 18 of 18 met\n"), "{out}");
    assert!(
        out.contains(
            "  met     quickmap-window (checked build): at most 80 instructions per pair beyond \
             the touch (direct-raw): measured 45.0 (quickmap-window 60.0 - direct-raw 15.0)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  met     quickmap-guard (lean build): at most 40 instructions per pair beyond the \
             touch (direct-raw): measured 30.0 (quickmap-guard 45.0 - direct-raw 15.0)\n"
        ),
        "{out}"
    );
    let json = fs::read_to_string(out_dir.join("bench.json")).unwrap();
    assert!(json.contains("\"schema\": \"quickmap-bench/2\""), "{json}");
    assert!(json.contains("\"label\": \"bench-icount-cpus1\""), "{json}");
    assert!(
        json.contains("\"label\": \"bench-lean-icount-cpus1\""),
        "{json}"
    );
    assert!(json.contains("\"kernel_cmdline\": \"mode=bench dmap=64 pairs=1000\""));
    assert_eq!(json.matches("\"status\": \"met\"").count(), 18);
    let svg = fs::read_to_string(out_dir.join("throughput.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 20);
    assert!(machine.log("bench-cpus4.log").contains("qmk: bench done"));
    assert!(machine
        .log("bench-lean-icount-cpus1.log")
        .contains("build=lean"));
}

#[test]
fn bench_without_a_lean_kernel_leaves_its_boot_out() {
    let machine = FakeMachine::healthy("benchnolean");
    let out_dir = machine.dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--cpus",
            "1,2,4",
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .env("QMK_QEMU", machine.dir.join("qemu"))
        .env("QMK_KERNEL", machine.dir.join("qmk.elf"))
        .env_remove("QMK_LEAN_KERNEL")
        .env("QMK_LOG_DIR", machine.dir.join("logs"))
        .output()
        .expect("xtask runs");
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert!(err.contains("xtask: no lean kernel"), "{err}");
    assert_eq!(machine.boots().len(), 4);
    assert!(!out.contains("lean build (neither"), "{out}");
    assert!(out.contains("targets: 15 of 18 met\n"), "{out}");
    assert!(
        out.contains(
            "  n/a     quickmap-guard (lean build): at most 40 instructions per pair beyond the \
             touch (direct-raw): not measured: no lean icount boot measured quickmap-guard\n"
        ),
        "{out}"
    );
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
    assert_eq!(
        machine.boots().len(),
        3,
        "checked and lean icount, one throughput boot"
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
            "xtask: unknown option '--bogus' for `cargo xtask run` (see `cargo xtask run \
             --help`)\n",
        ),
        (
            &["test", "--bogus"][..],
            "xtask: unknown option '--bogus' for `cargo xtask test` (see `cargo xtask test \
             --help`)\n",
        ),
        (
            &["run", "--test", "a"][..],
            "xtask: --test: not an option of `cargo xtask run`\n",
        ),
        (&["run", "--cpus"][..], "xtask: --cpus: needs a value\n"),
        (
            &["run", "--kvm", "--kvm"][..],
            "xtask: --kvm: given more than once\n",
        ),
        (
            &[][..],
            "xtask: missing command (expected build, run, test, bench or help; see `cargo xtask \
             help`)\n",
        ),
        (
            &["benchmark"][..],
            "xtask: unknown command 'benchmark' (expected build, run, test, bench or help)\n",
        ),
        (
            &["run", "--ops", "5", "--secs", "5"][..],
            "xtask: --ops and --secs exclude each other (give a number of operations or a \
             duration, not both)\n",
        ),
        (
            &["test", "--host-only", "--kernel-only"][..],
            "xtask: --host-only and --kernel-only exclude each other (give neither to run \
             both)\n",
        ),
        (
            &["run", "--dmap", "33"][..],
            "xtask: --dmap 33: must be even (the kernel maps it with 2 MiB pages)\n",
        ),
        (
            &["bench", "--pairs", "0"][..],
            "xtask: --pairs 0: must be at least 1\n",
        ),
        (
            &["run", "--invalidation", "lazy"][..],
            "xtask: --invalidation lazy: must be strict or deferred\n",
        ),
        (
            &["run", "--invalidation", "deferred", "--cpus", "16"][..],
            "xtask: --invalidation deferred: needs --cpus 8 or fewer (the kernel's deferred \
             quickmap instance serves at most 8 CPUs; 16 asked)\n",
        ),
    ] {
        let output = machine.xtask(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&output), message);
        assert!(output.stdout.is_empty());
    }
    assert!(machine.boots().is_empty());
}

#[test]
fn help_is_the_full_text_on_stdout() {
    let machine = FakeMachine::healthy("help");
    for args in [&["help"][..], &["--help"], &["-h"]] {
        let help = machine.xtask(args);
        assert_eq!(help.status.code(), Some(0), "{args:?}");
        assert!(help.stderr.is_empty(), "{args:?}");
        let out = stdout(&help);
        assert!(out.contains("Usage: cargo xtask <COMMAND>"), "{out}");
        for command in ["build", "run", "test", "bench"] {
            assert!(out.contains(&format!("\n  {command} ")), "{command}: {out}");
        }
        assert!(out.contains("QMK_QEMU=PATH"), "{out}");
    }
    for args in [&["run", "--help"][..], &["help", "run"]] {
        let help = machine.xtask(args);
        assert_eq!(help.status.code(), Some(0), "{args:?}");
        let out = stdout(&help);
        assert!(out.contains("Usage: cargo xtask run [OPTIONS]"), "{out}");
        assert!(out.contains("--invalidation <MODE>"), "{out}");
        assert!(out.contains("[default: 4]"), "{out}");
    }
    assert!(machine.boots().is_empty());
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
