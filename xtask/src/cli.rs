//! Command-line parsing: turns `cargo xtask <command> [options]` into a validated
//! [`Command`], or a [`UsageError`] whose message fits on one line.
//!
//! Hand-written rather than `clap`: the tool promises ONE error line and exit status 2
//! for any bad input, and a dozen options do not justify a dependency plus the
//! configuration needed to tame clap's multi-line usage output.

use std::fmt;
use std::time::Duration;

/// Text printed by `cargo xtask help`.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build              build the qmk kernel and print the ELF path
  run                build the kernel and run its page workload (mode=run) with a live
                     progress bar, then print a summary table
  test               run every test: host (cargo test, fmt, clippy), then the kernel
                     part: static check of the ELF, the kernel suite, a short workload
  bench              boot the benchmark (mode=bench): the checked and the lean kernel
                     once each with icount on 1 CPU, the checked one once per CPU count;
                     print tables, check targets, write bench.json and throughput.svg
  help               print this text

options for run, test and bench:
  --cpus N           CPUs to boot, 1..=16 (run: default 4); `test` and `bench` take a
                     list, e.g. 1,2,4 (test: default 1,2,4,8, or 1 with --icount, one
                     kernel suite per count; bench: default 1,2,4, one throughput boot
                     per count)
  --memory MiB       guest memory, at least 128 (default 2048)
  --dmap MiB         size of the kernel's direct map: even, at least 32, at most --memory
                     (default 64 for run and bench, so most memory is high memory; 256
                     for test)
  --timeout SECONDS  kill QEMU after this long, per boot (default 300)
  --seed N           seed (u64) passed to the kernel
  --verbose          show the QEMU command line (and, for test, all serial output)

options for run and test:
  --icount           deterministic instruction counting (-icount shift=0); 1 CPU, TCG only
  --kvm              use KVM instead of TCG (opt-in; TCG is the supported accelerator)

options for run only:
  --ops N            stop the workload after N operations in all (ops=N)
  --secs N           stop the workload after N seconds of guest time (secs=N); give
                     --ops or --secs, not both (neither: the kernel's default)
  --invalidation MODE
                     the kernel's quickmap instance the workload drives (invalidation=
                     MODE): strict (default; every remove invalidates) or deferred
                     (removed windows stay mapped until a local full flush; needs
                     --cpus 8 or fewer)

options for test only:
  --test FILTER      run only kernel tests whose name contains FILTER (exact name wins);
                     skips the static check and the workload
  --host-only        run only the host tests
  --kernel-only      run only the kernel part
  --no-workload      skip the short workload boots after the kernel suites (run-workload:
                     mode=run ops=10000 on 4 CPUs, 1 with --icount; once with each
                     invalidation, strict and deferred)

options for bench only:
  --pairs N          enter+access+remove pairs per variant (pairs=N; default: the
                     kernel's)
  --out DIR          where bench.json and throughput.svg go (default target/bench)

options for build:
  --verbose          show the cargo command

environment:
  QMK_QEMU=PATH      QEMU binary to use (default: qemu-system-x86_64 from PATH)
  QMK_KERNEL=PATH    boot this ELF instead of building qmk/
  QMK_OBJDUMP=PATH   objdump for the static check (default: objdump from PATH)
  QMK_LOG_DIR=DIR    where serial logs go (default: target/qmk-logs)

exit status: 0 success, 1 a build, boot or test failed (run: the workload failed or
found a mismatch; bench: a boot failed or a variant is missing, while a missed target
is reported but not a failure), 2 bad command line";

/// Fewest and most CPUs a boot may have; 16 is what the kernel's per-CPU tables hold.
pub const CPU_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
/// Smallest guest memory (MiB) the kernel is expected to boot in.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Largest guest memory (MiB) accepted: a sanity bound against typos, not a QEMU limit.
pub const MAX_MEMORY_MIB: u32 = 1024 * 1024;
/// Default guest memory (MiB): large enough that most of it lies above the direct map.
pub const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Default direct-map size (MiB) for `test`; memory above it is reachable only through
/// quickmap.
pub const DEFAULT_DMAP_MIB: u32 = 256;
/// Default direct-map size (MiB) for `run` and `bench`: small, so that most of the
/// guest's memory is high memory and the window path does most of the work.
pub const DEFAULT_WORKLOAD_DMAP_MIB: u32 = 64;
/// Smallest direct map (MiB) the kernel accepts (`docs/kernel-protocol.md`).
pub const MIN_DMAP_MIB: u32 = 32;
/// Default CPUs of `cargo xtask run`: enough for the per-CPU windows to matter.
pub const DEFAULT_RUN_CPUS: u32 = 4;
/// Default CPU counts of `cargo xtask test`: one kernel suite each, so SMP,
/// migration and shootdowns are exercised at every scale the kernel is tested at.
pub const DEFAULT_TEST_CPUS: [u32; 4] = [1, 2, 4, 8];
/// Default CPU counts of the benchmark's throughput boots.
pub const DEFAULT_BENCH_CPUS: [u32; 3] = [1, 2, 4];
/// Default per-boot timeout: generous, because TCG with many CPUs is slow.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Most CPUs the kernel's deferred quickmap instance serves (its windows fill one page
/// table; `DEFERRED_MAX_CPUS` in `qmk/src/vm/quick.rs`).
pub const DEFERRED_MAX_CPUS: u32 = 8;

/// A bad command line. The message names the option and the problem, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `cargo xtask build`.
    Build(BuildOptions),
    /// `cargo xtask run`.
    Run(RunOptions),
    /// `cargo xtask test`.
    Test(TestOptions),
    /// `cargo xtask bench`.
    Bench(BenchOptions),
    /// `cargo xtask help` (or `--help`, `-h`).
    Help,
}

/// Options of `cargo xtask build`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildOptions {
    /// Show the commands run.
    pub verbose: bool,
}

/// Options of `cargo xtask run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Number of CPUs of the single boot.
    pub cpus: u32,
    /// Everything else about the machine.
    pub machine: MachineOptions,
    /// When the workload stops; `None` leaves it to the kernel.
    pub stop: Option<WorkloadStop>,
    /// Which quickmap instance the workload drives (`invalidation=`).
    pub invalidation: Invalidation,
}

/// Which of the kernel's quickmap instances the workload drives (`invalidation=` on the
/// kernel command line; `docs/kernel-protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Invalidation {
    /// Every remove invalidates (the kernel's default).
    #[default]
    Strict,
    /// Removed write-back windows stay mapped until the CPU's next local full flush.
    Deferred,
}

impl Invalidation {
    /// Both, in the order `cargo xtask test` runs its workload boots.
    pub const ALL: [Invalidation; 2] = [Invalidation::Strict, Invalidation::Deferred];

    /// The value of `--invalidation` and of the kernel's `invalidation=`.
    pub fn word(self) -> &'static str {
        match self {
            Invalidation::Strict => "strict",
            Invalidation::Deferred => "deferred",
        }
    }

    /// The kernel command-line word: none for strict, the kernel's default, so that a
    /// strict boot's command line is what it was before the option existed.
    pub fn kernel_word(self) -> Option<String> {
        (self != Invalidation::Strict).then(|| format!("invalidation={}", self.word()))
    }
}

/// When the page workload stops (`ops=` or `secs=` on the kernel command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadStop {
    /// After this many operations in all.
    Ops(u64),
    /// After this many seconds of guest time.
    Secs(u64),
}

impl WorkloadStop {
    /// The kernel command-line word.
    pub fn kernel_word(self) -> String {
        match self {
            WorkloadStop::Ops(ops) => format!("ops={ops}"),
            WorkloadStop::Secs(secs) => format!("secs={secs}"),
        }
    }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// One throughput boot per entry, in this order (the icount boot always has 1 CPU).
    pub cpu_counts: Vec<u32>,
    /// Memory, direct map, timeout, seed (icount is set per boot by the command).
    pub machine: MachineOptions,
    /// `pairs=` for the kernel; `None` leaves it to the kernel.
    pub pairs: Option<u64>,
    /// Directory for `bench.json` and `throughput.svg`; `None` means `target/bench`.
    pub out_dir: Option<std::path::PathBuf>,
}

/// Options of `cargo xtask test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOptions {
    /// One kernel suite runs per entry, in this order.
    pub cpu_counts: Vec<u32>,
    /// Everything else about the machine, shared by every boot.
    pub machine: MachineOptions,
    /// Only kernel tests matching this (see `docs/kernel-protocol.md`).
    pub filter: Option<String>,
    /// Which halves of the test run.
    pub scope: TestScope,
    /// Whether the short workload boot (`run-workload`) follows the kernel suites.
    pub workload: bool,
}

/// Which halves of `cargo xtask test` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestScope {
    /// Host tests, then the kernel suite.
    All,
    /// `--host-only`.
    HostOnly,
    /// `--kernel-only`.
    KernelOnly,
}

impl TestScope {
    /// Whether `cargo test`, fmt and clippy run.
    pub fn runs_host(self) -> bool {
        self != TestScope::KernelOnly
    }

    /// Whether the kernel suite runs.
    pub fn runs_kernel(self) -> bool {
        self != TestScope::HostOnly
    }
}

/// The accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation; the default, because the nested KVM on our machines faults on
    /// SSE in a guest kernel (DESIGN.md §5).
    Tcg,
    /// `--kvm`.
    Kvm,
}

/// Machine settings shared by `run` and `test`, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineOptions {
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Direct-map size in MiB (`dmap=` on the kernel command line); `<= memory_mib`.
    pub dmap_mib: u32,
    /// Per-boot timeout.
    pub timeout: Duration,
    /// `-icount shift=0`; only with one CPU and TCG.
    pub icount: bool,
    /// `seed=` on the kernel command line, if given.
    pub seed: Option<u64>,
    /// Accelerator.
    pub accel: Accel,
    /// Show QEMU command lines (and, for `test`, all serial output).
    pub verbose: bool,
}

/// Every option the tool knows, whichever command accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionName {
    Cpus,
    Memory,
    Dmap,
    Timeout,
    Icount,
    Test,
    Seed,
    Kvm,
    Verbose,
    HostOnly,
    KernelOnly,
    NoWorkload,
    Ops,
    Secs,
    Pairs,
    Out,
    Invalidation,
}

impl OptionName {
    const ALL: [OptionName; 17] = [
        OptionName::Cpus,
        OptionName::Memory,
        OptionName::Dmap,
        OptionName::Timeout,
        OptionName::Icount,
        OptionName::Test,
        OptionName::Seed,
        OptionName::Kvm,
        OptionName::Verbose,
        OptionName::HostOnly,
        OptionName::KernelOnly,
        OptionName::NoWorkload,
        OptionName::Ops,
        OptionName::Secs,
        OptionName::Pairs,
        OptionName::Out,
        OptionName::Invalidation,
    ];

    fn spelling(self) -> &'static str {
        match self {
            OptionName::Cpus => "--cpus",
            OptionName::Memory => "--memory",
            OptionName::Dmap => "--dmap",
            OptionName::Timeout => "--timeout",
            OptionName::Icount => "--icount",
            OptionName::Test => "--test",
            OptionName::Seed => "--seed",
            OptionName::Kvm => "--kvm",
            OptionName::Verbose => "--verbose",
            OptionName::HostOnly => "--host-only",
            OptionName::KernelOnly => "--kernel-only",
            OptionName::NoWorkload => "--no-workload",
            OptionName::Ops => "--ops",
            OptionName::Secs => "--secs",
            OptionName::Pairs => "--pairs",
            OptionName::Out => "--out",
            OptionName::Invalidation => "--invalidation",
        }
    }

    fn takes_value(self) -> bool {
        matches!(
            self,
            OptionName::Cpus
                | OptionName::Memory
                | OptionName::Dmap
                | OptionName::Timeout
                | OptionName::Test
                | OptionName::Seed
                | OptionName::Ops
                | OptionName::Secs
                | OptionName::Pairs
                | OptionName::Out
                | OptionName::Invalidation
        )
    }

    fn from_spelling(spelling: &str) -> Option<OptionName> {
        Self::ALL.into_iter().find(|o| o.spelling() == spelling)
    }
}

/// The commands that take options, used to say which options each accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandName {
    Build,
    Run,
    Test,
    Bench,
}

impl CommandName {
    fn accepts(self, option: OptionName) -> bool {
        use OptionName::*;
        let machine = matches!(option, Cpus | Memory | Dmap | Timeout | Seed | Verbose);
        match self {
            CommandName::Build => option == Verbose,
            CommandName::Run => {
                machine || matches!(option, Icount | Kvm | Ops | Secs | Invalidation)
            }
            CommandName::Test => {
                machine
                    || matches!(
                        option,
                        Icount | Kvm | Test | HostOnly | KernelOnly | NoWorkload
                    )
            }
            // Bench chooses icount per boot itself, and its throughput figures are
            // TCG figures (DESIGN.md §5), so neither --icount nor --kvm applies.
            CommandName::Bench => machine || matches!(option, Pairs | Out),
        }
    }

    fn spelling(self) -> &'static str {
        match self {
            CommandName::Build => "build",
            CommandName::Run => "run",
            CommandName::Test => "test",
            CommandName::Bench => "bench",
        }
    }
}

/// Options as typed, before validation: value options keep their text so that error
/// messages can quote it.
#[derive(Debug, Default)]
struct RawOptions {
    values: Vec<(OptionName, String)>,
    flags: Vec<OptionName>,
}

impl RawOptions {
    fn value(&self, name: OptionName) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: OptionName) -> bool {
        self.flags.contains(&name)
    }

    fn seen(&self, name: OptionName) -> bool {
        self.flag(name) || self.value(name).is_some()
    }
}

/// Parses the arguments after `cargo xtask` (program name excluded).
pub fn parse_args<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let command = match args.next().as_deref() {
        None => {
            return Err(usage(
                "missing command (expected build, run, test, bench or help; see `cargo xtask \
                 help`)",
            ))
        }
        Some("help" | "--help" | "-h") => return Ok(Command::Help),
        Some("build") => CommandName::Build,
        Some("run") => CommandName::Run,
        Some("test") => CommandName::Test,
        Some("bench") => CommandName::Bench,
        Some(other) => {
            return Err(usage(format!(
                "unknown command '{other}' (expected build, run, test, bench or help)"
            )))
        }
    };
    let raw = collect_options(command, args)?;
    match command {
        CommandName::Build => Ok(Command::Build(BuildOptions {
            verbose: raw.flag(OptionName::Verbose),
        })),
        CommandName::Run => validate_run(&raw).map(Command::Run),
        CommandName::Test => validate_test(&raw).map(Command::Test),
        CommandName::Bench => validate_bench(&raw).map(Command::Bench),
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Splits `--name value` / `--name=value` / `--flag`, rejecting unknown, misplaced and
/// repeated options.
fn collect_options(
    command: CommandName,
    mut args: impl Iterator<Item = String>,
) -> Result<RawOptions, UsageError> {
    let mut raw = RawOptions::default();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(usage(format!(
                "{arg}: use `cargo xtask help` for the list of options"
            )));
        }
        if !arg.starts_with("--") {
            return Err(usage(format!(
                "unexpected argument '{arg}' for `cargo xtask {}` (options start with --)",
                command.spelling()
            )));
        }
        let (spelling, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let Some(name) = OptionName::from_spelling(spelling) else {
            return Err(usage(format!(
                "unknown option '{spelling}' for `cargo xtask {}`",
                command.spelling()
            )));
        };
        if !command.accepts(name) {
            return Err(usage(format!(
                "{spelling}: not an option of `cargo xtask {}`",
                command.spelling()
            )));
        }
        if raw.seen(name) {
            return Err(usage(format!("{spelling}: given more than once")));
        }
        if name.takes_value() {
            let value = match inline_value {
                Some(value) => value,
                None => match args.next() {
                    Some(value) if !value.starts_with("--") => value,
                    _ => return Err(usage(format!("{spelling}: needs a value"))),
                },
            };
            raw.values.push((name, value));
        } else {
            if inline_value.is_some() {
                return Err(usage(format!("{spelling}: takes no value")));
            }
            raw.flags.push(name);
        }
    }
    Ok(raw)
}

fn validate_run(raw: &RawOptions) -> Result<RunOptions, UsageError> {
    let cpu_counts = parse_cpu_counts(raw.value(OptionName::Cpus), &[DEFAULT_RUN_CPUS])?;
    let [cpus] = cpu_counts[..] else {
        return Err(usage(format!(
            "--cpus {}: `run` boots one machine, give a single CPU count",
            raw.value(OptionName::Cpus).unwrap_or_default()
        )));
    };
    let machine = validate_machine(raw, &cpu_counts, DEFAULT_WORKLOAD_DMAP_MIB)?;
    let ops = positive(raw, OptionName::Ops)?;
    let secs = positive(raw, OptionName::Secs)?;
    let stop = match (ops, secs) {
        (Some(_), Some(_)) => {
            return Err(usage(
                "--ops and --secs exclude each other (give a number of operations or a \
                 duration, not both)",
            ))
        }
        (Some(ops), None) => Some(WorkloadStop::Ops(ops)),
        (None, Some(secs)) => Some(WorkloadStop::Secs(secs)),
        (None, None) => None,
    };
    let invalidation = parse_invalidation(raw.value(OptionName::Invalidation), cpus)?;
    Ok(RunOptions {
        cpus,
        machine,
        stop,
        invalidation,
    })
}

/// Parses `--invalidation` (strict when absent); deferred needs at most
/// [`DEFERRED_MAX_CPUS`] CPUs.
fn parse_invalidation(text: Option<&str>, cpus: u32) -> Result<Invalidation, UsageError> {
    let invalidation = match text {
        None | Some("strict") => Invalidation::Strict,
        Some("deferred") => Invalidation::Deferred,
        Some(other) => {
            return Err(usage(format!(
                "--invalidation {other}: must be strict or deferred"
            )))
        }
    };
    if invalidation == Invalidation::Deferred && cpus > DEFERRED_MAX_CPUS {
        return Err(usage(format!(
            "--invalidation deferred: needs --cpus {DEFERRED_MAX_CPUS} or fewer (the kernel's \
             deferred quickmap instance serves at most {DEFERRED_MAX_CPUS} CPUs; {cpus} asked)"
        )));
    }
    Ok(invalidation)
}

fn validate_bench(raw: &RawOptions) -> Result<BenchOptions, UsageError> {
    let cpu_counts = parse_cpu_counts(raw.value(OptionName::Cpus), &DEFAULT_BENCH_CPUS)?;
    let machine = validate_machine(raw, &cpu_counts, DEFAULT_WORKLOAD_DMAP_MIB)?;
    let pairs = positive(raw, OptionName::Pairs)?;
    let out_dir = match raw.value(OptionName::Out) {
        None => None,
        Some("") => return Err(usage("--out: the directory must not be empty")),
        Some(dir) => Some(std::path::PathBuf::from(dir)),
    };
    Ok(BenchOptions {
        cpu_counts,
        machine,
        pairs,
        out_dir,
    })
}

/// A count option that must be at least 1 when given (`--ops`, `--secs`, `--pairs`).
fn positive(raw: &RawOptions, name: OptionName) -> Result<Option<u64>, UsageError> {
    let Some(text) = raw.value(name) else {
        return Ok(None);
    };
    let value = parse_number::<u64>(name.spelling(), text)?;
    if value == 0 {
        return Err(usage(format!(
            "{} {text}: must be at least 1",
            name.spelling()
        )));
    }
    Ok(Some(value))
}

fn validate_test(raw: &RawOptions) -> Result<TestOptions, UsageError> {
    // icount runs on one CPU only (QEMU 7.2 hangs starting a second one), so
    // `--icount` without `--cpus` means one CPU rather than an error.
    let default_cpus: &[u32] = if raw.flag(OptionName::Icount) {
        &[1]
    } else {
        &DEFAULT_TEST_CPUS
    };
    let cpu_counts = parse_cpu_counts(raw.value(OptionName::Cpus), default_cpus)?;
    let machine = validate_machine(raw, &cpu_counts, DEFAULT_DMAP_MIB)?;
    let scope = match (
        raw.flag(OptionName::HostOnly),
        raw.flag(OptionName::KernelOnly),
    ) {
        (true, true) => {
            return Err(usage(
                "--host-only and --kernel-only exclude each other (give neither to run both)",
            ))
        }
        (true, false) => TestScope::HostOnly,
        (false, true) => TestScope::KernelOnly,
        (false, false) => TestScope::All,
    };
    let filter = match raw.value(OptionName::Test) {
        None => None,
        Some(filter) => Some(parse_filter(filter, scope)?),
    };
    if raw.flag(OptionName::NoWorkload) && scope == TestScope::HostOnly {
        return Err(usage(
            "--no-workload: the workload is part of the kernel half, which --host-only \
             skips already",
        ));
    }
    Ok(TestOptions {
        cpu_counts,
        machine,
        filter,
        scope,
        workload: !raw.flag(OptionName::NoWorkload),
    })
}

/// Checks the options that describe the machine; `cpu_counts` is already valid.
/// `default_dmap_mib` is the command's direct map when `--dmap` is not given.
fn validate_machine(
    raw: &RawOptions,
    cpu_counts: &[u32],
    default_dmap_mib: u32,
) -> Result<MachineOptions, UsageError> {
    let memory_mib = match raw.value(OptionName::Memory) {
        None => DEFAULT_MEMORY_MIB,
        Some(text) => {
            let mib = parse_number::<u32>("--memory", text)?;
            if mib < MIN_MEMORY_MIB {
                return Err(usage(format!(
                    "--memory {text}: must be at least {MIN_MEMORY_MIB} (MiB)"
                )));
            }
            if mib > MAX_MEMORY_MIB {
                return Err(usage(format!(
                    "--memory {text}: must be at most {MAX_MEMORY_MIB} (MiB)"
                )));
            }
            mib
        }
    };
    let dmap_mib = match raw.value(OptionName::Dmap) {
        None if default_dmap_mib <= memory_mib => default_dmap_mib,
        // --memory below the default direct map: map all of memory directly (rounded
        // down to even, as the kernel maps 2 MiB pages).
        None => memory_mib & !1,
        Some(text) => {
            let mib = parse_number::<u32>("--dmap", text)?;
            if mib < MIN_DMAP_MIB {
                return Err(usage(format!(
                    "--dmap {text}: must be at least {MIN_DMAP_MIB} (MiB), the kernel's minimum"
                )));
            }
            if mib % 2 != 0 {
                return Err(usage(format!(
                    "--dmap {text}: must be even (the kernel maps it with 2 MiB pages)"
                )));
            }
            if mib > memory_mib {
                return Err(usage(format!(
                    "--dmap {text}: must not exceed the guest memory ({memory_mib} MiB)"
                )));
            }
            mib
        }
    };
    let timeout = match raw.value(OptionName::Timeout) {
        None => DEFAULT_TIMEOUT,
        Some(text) => {
            let seconds = parse_number::<u64>("--timeout", text)?;
            if seconds == 0 {
                return Err(usage(format!(
                    "--timeout {text}: must be at least 1 (seconds)"
                )));
            }
            Duration::from_secs(seconds)
        }
    };
    let seed = raw
        .value(OptionName::Seed)
        .map(|text| parse_number::<u64>("--seed", text))
        .transpose()?;
    let accel = if raw.flag(OptionName::Kvm) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let icount = raw.flag(OptionName::Icount);
    if icount {
        if cpu_counts.iter().any(|&cpus| cpus != 1) {
            return Err(usage(
                "--icount: needs --cpus 1 (QEMU 7.2 hangs starting a second CPU under \
                 -icount shift=0, DESIGN.md §5)",
            ));
        }
        if accel == Accel::Kvm {
            return Err(usage(
                "--icount: cannot be combined with --kvm (instruction counting is a TCG feature)",
            ));
        }
    }
    Ok(MachineOptions {
        memory_mib,
        dmap_mib,
        timeout,
        icount,
        seed,
        accel,
        verbose: raw.flag(OptionName::Verbose),
    })
}

/// Parses `--cpus`: one count, or a comma-separated list without repeats; `default`
/// when the option is absent.
fn parse_cpu_counts(text: Option<&str>, default: &[u32]) -> Result<Vec<u32>, UsageError> {
    let Some(text) = text else {
        return Ok(default.to_vec());
    };
    let mut counts = Vec::new();
    for item in text.split(',') {
        let cpus = parse_number::<u32>("--cpus", item).map_err(|_| {
            usage(format!(
                "--cpus {text}: '{item}' is not a number (give e.g. 4 or 1,2,4)"
            ))
        })?;
        if !CPU_RANGE.contains(&cpus) {
            return Err(usage(format!(
                "--cpus {text}: must be between {} and {}",
                CPU_RANGE.start(),
                CPU_RANGE.end()
            )));
        }
        if counts.contains(&cpus) {
            return Err(usage(format!("--cpus {text}: {cpus} is listed twice")));
        }
        counts.push(cpus);
    }
    Ok(counts)
}

/// The filter becomes one `test=FILTER` word of the kernel command line, so it cannot
/// hold a space (word separator) or `=` (key separator).
fn parse_filter(filter: &str, scope: TestScope) -> Result<String, UsageError> {
    if scope == TestScope::HostOnly {
        return Err(usage(
            "--test: filters kernel tests, but --host-only skips the kernel suite",
        ));
    }
    if filter.is_empty() {
        return Err(usage("--test: the filter must not be empty"));
    }
    if filter.chars().any(|c| c.is_whitespace() || c == '=') {
        return Err(usage(format!(
            "--test '{filter}': must be one word without spaces or '=' (it goes on the \
             kernel command line)"
        )));
    }
    Ok(filter.to_string())
}

fn parse_number<T: std::str::FromStr>(option: &str, text: &str) -> Result<T, UsageError> {
    text.parse()
        .map_err(|_| usage(format!("{option} {text}: not a non-negative whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, UsageError> {
        parse_args(line.split_whitespace())
    }

    fn error(line: &str) -> String {
        match parse(line) {
            Err(UsageError(message)) => message,
            Ok(command) => panic!("`{line}` parsed as {command:?}"),
        }
    }

    fn test_options(line: &str) -> TestOptions {
        match parse(line) {
            Ok(Command::Test(options)) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    fn bench_options(line: &str) -> BenchOptions {
        match parse(line) {
            Ok(Command::Bench(options)) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    fn run_options(line: &str) -> RunOptions {
        match parse(line) {
            Ok(Command::Run(options)) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let run = run_options("run");
        assert_eq!(run.cpus, 4);
        assert_eq!(run.stop, None);
        assert_eq!(run.invalidation, Invalidation::Strict);
        assert_eq!(
            run.machine,
            MachineOptions {
                memory_mib: 2048,
                dmap_mib: 64,
                timeout: DEFAULT_TIMEOUT,
                icount: false,
                seed: None,
                accel: Accel::Tcg,
                verbose: false,
            }
        );
        let test = test_options("test");
        assert_eq!(test.cpu_counts, vec![1, 2, 4, 8]);
        assert_eq!(test_options("test --icount").cpu_counts, vec![1]);
        assert_eq!(test.scope, TestScope::All);
        assert_eq!(test.filter, None);
        assert!(test.workload);
        assert_eq!(test.machine.dmap_mib, 256);
        let bench = bench_options("bench");
        assert_eq!(bench.cpu_counts, [1, 2, 4]);
        assert_eq!(bench.machine.dmap_mib, 64);
        assert_eq!(bench.pairs, None);
        assert_eq!(bench.out_dir, None);
        assert_eq!(
            parse("build"),
            Ok(Command::Build(BuildOptions { verbose: false }))
        );
    }

    #[test]
    fn help_spellings() {
        for spelling in ["help", "--help", "-h"] {
            assert_eq!(parse(spelling), Ok(Command::Help));
        }
    }

    #[test]
    fn every_option_is_read() {
        let test = test_options(
            "test --cpus 1 --memory 512 --dmap=128 --timeout 9 --icount --test window \
             --seed 42 --verbose --kernel-only",
        );
        assert_eq!(test.cpu_counts, vec![1]);
        assert_eq!(test.machine.memory_mib, 512);
        assert_eq!(test.machine.dmap_mib, 128);
        assert_eq!(test.machine.timeout, Duration::from_secs(9));
        assert!(test.machine.icount);
        assert_eq!(test.machine.seed, Some(42));
        assert!(test.machine.verbose);
        assert_eq!(test.filter.as_deref(), Some("window"));
        assert_eq!(test.scope, TestScope::KernelOnly);
        assert_eq!(run_options("run --kvm --cpus=16").machine.accel, Accel::Kvm);
        assert_eq!(run_options("run --kvm --cpus=16").cpus, 16);
        assert_eq!(test_options("test --host-only").scope, TestScope::HostOnly);
        assert_eq!(
            parse("build --verbose"),
            Ok(Command::Build(BuildOptions { verbose: true }))
        );
    }

    #[test]
    fn cpu_lists_for_test() {
        assert_eq!(test_options("test --cpus 1,2,4,8").cpu_counts, [1, 2, 4, 8]);
        assert_eq!(
            error("run --cpus 1,2"),
            "--cpus 1,2: `run` boots one machine, give a single CPU count"
        );
        assert_eq!(
            error("test --cpus 1,2,2"),
            "--cpus 1,2,2: 2 is listed twice"
        );
        assert_eq!(
            error("test --cpus 1,,2"),
            "--cpus 1,,2: '' is not a number (give e.g. 4 or 1,2,4)"
        );
    }

    #[test]
    fn cpu_count_errors() {
        assert_eq!(error("run --cpus 0"), "--cpus 0: must be between 1 and 16");
        assert_eq!(
            error("test --cpus 17"),
            "--cpus 17: must be between 1 and 16"
        );
        assert_eq!(
            error("run --cpus two"),
            "--cpus two: 'two' is not a number (give e.g. 4 or 1,2,4)"
        );
    }

    #[test]
    fn memory_errors() {
        assert_eq!(
            error("run --memory 64"),
            "--memory 64: must be at least 128 (MiB)"
        );
        assert_eq!(
            error("run --memory 2000000"),
            "--memory 2000000: must be at most 1048576 (MiB)"
        );
        assert_eq!(
            error("run --memory 1G"),
            "--memory 1G: not a non-negative whole number"
        );
    }

    #[test]
    fn dmap_errors_and_default() {
        assert_eq!(
            error("run --dmap 0"),
            "--dmap 0: must be at least 32 (MiB), the kernel's minimum"
        );
        assert_eq!(
            error("test --dmap 30"),
            "--dmap 30: must be at least 32 (MiB), the kernel's minimum"
        );
        assert_eq!(
            error("bench --dmap 65"),
            "--dmap 65: must be even (the kernel maps it with 2 MiB pages)"
        );
        assert_eq!(
            error("run --dmap 4096"),
            "--dmap 4096: must not exceed the guest memory (2048 MiB)"
        );
        assert_eq!(
            error("run --memory 512 --dmap 514"),
            "--dmap 514: must not exceed the guest memory (512 MiB)"
        );
        assert_eq!(
            error("run --dmap -1"),
            "--dmap -1: not a non-negative whole number"
        );
        assert_eq!(test_options("test --memory 128").machine.dmap_mib, 128);
        assert_eq!(test_options("test --memory 129").machine.dmap_mib, 128);
        assert_eq!(run_options("run --memory 128").machine.dmap_mib, 64);
    }

    #[test]
    fn timeout_and_seed_errors() {
        assert_eq!(
            error("test --timeout 0"),
            "--timeout 0: must be at least 1 (seconds)"
        );
        assert_eq!(
            error("test --timeout 1.5"),
            "--timeout 1.5: not a non-negative whole number"
        );
        assert_eq!(
            error("run --seed -3"),
            "--seed -3: not a non-negative whole number"
        );
    }

    #[test]
    fn icount_rules() {
        assert_eq!(
            error("run --icount --cpus 2"),
            "--icount: needs --cpus 1 (QEMU 7.2 hangs starting a second CPU under \
             -icount shift=0, DESIGN.md §5)"
        );
        assert_eq!(
            error("test --icount --cpus 1,4"),
            "--icount: needs --cpus 1 (QEMU 7.2 hangs starting a second CPU under \
             -icount shift=0, DESIGN.md §5)"
        );
        assert_eq!(
            error("run --icount --kvm --cpus 1"),
            "--icount: cannot be combined with --kvm (instruction counting is a TCG feature)"
        );
        assert!(run_options("run --icount --cpus 1").machine.icount);
        assert_eq!(
            error("run --icount"),
            "--icount: needs --cpus 1 (QEMU 7.2 hangs starting a second CPU under \
             -icount shift=0, DESIGN.md §5)"
        );
    }

    #[test]
    fn filter_errors() {
        assert_eq!(
            error("test --test foo --host-only"),
            "--test: filters kernel tests, but --host-only skips the kernel suite"
        );
        assert_eq!(
            parse_args(["test", "--test", ""]),
            Err(usage("--test: the filter must not be empty"))
        );
        assert_eq!(
            parse_args(["test", "--test", "a b"]),
            Err(usage(
                "--test 'a b': must be one word without spaces or '=' (it goes on the \
                 kernel command line)"
            ))
        );
        assert!(error("test --test=a=b").starts_with("--test 'a=b': must be one word"));
    }

    #[test]
    fn scope_conflict() {
        assert_eq!(
            error("test --host-only --kernel-only"),
            "--host-only and --kernel-only exclude each other (give neither to run both)"
        );
    }

    #[test]
    fn command_errors() {
        assert_eq!(
            error(""),
            "missing command (expected build, run, test, bench or help; see `cargo xtask help`)"
        );
        assert_eq!(
            error("benchmark"),
            "unknown command 'benchmark' (expected build, run, test, bench or help)"
        );
    }

    #[test]
    fn option_shape_errors() {
        assert_eq!(
            error("test --frobnicate"),
            "unknown option '--frobnicate' for `cargo xtask test`"
        );
        assert_eq!(
            error("run --test foo"),
            "--test: not an option of `cargo xtask run`"
        );
        assert_eq!(
            error("build --cpus 2"),
            "--cpus: not an option of `cargo xtask build`"
        );
        assert_eq!(
            error("run extra"),
            "unexpected argument 'extra' for `cargo xtask run` (options start with --)"
        );
        assert_eq!(error("run --cpus"), "--cpus: needs a value");
        assert_eq!(error("run --cpus --kvm"), "--cpus: needs a value");
        assert_eq!(error("run --kvm=yes"), "--kvm: takes no value");
        assert_eq!(
            error("run --cpus 1 --cpus 2"),
            "--cpus: given more than once"
        );
        assert_eq!(error("run --kvm --kvm"), "--kvm: given more than once");
        assert_eq!(
            error("test -h"),
            "-h: use `cargo xtask help` for the list of options"
        );
    }

    #[test]
    fn workload_stop() {
        assert_eq!(
            run_options("run --ops 500").stop,
            Some(WorkloadStop::Ops(500))
        );
        assert_eq!(
            run_options("run --secs=3").stop,
            Some(WorkloadStop::Secs(3))
        );
        assert_eq!(WorkloadStop::Ops(5).kernel_word(), "ops=5");
        assert_eq!(WorkloadStop::Secs(2).kernel_word(), "secs=2");
        assert_eq!(
            error("run --ops 5 --secs 2"),
            "--ops and --secs exclude each other (give a number of operations or a \
             duration, not both)"
        );
        assert_eq!(error("run --ops 0"), "--ops 0: must be at least 1");
        assert_eq!(error("run --secs 0"), "--secs 0: must be at least 1");
        assert_eq!(
            error("run --cpus 17"),
            "--cpus 17: must be between 1 and 16"
        );
        assert_eq!(
            error("test --ops 5"),
            "--ops: not an option of `cargo xtask test`"
        );
    }

    #[test]
    fn bench_options_are_read() {
        let bench = bench_options("bench --cpus 1,8 --pairs 1000 --out /tmp/b --memory 1024");
        assert_eq!(bench.cpu_counts, [1, 8]);
        assert_eq!(bench.pairs, Some(1000));
        assert_eq!(bench.out_dir, Some(std::path::PathBuf::from("/tmp/b")));
        assert_eq!(bench.machine.memory_mib, 1024);
        assert!(!bench.machine.icount);
        assert_eq!(error("bench --pairs 0"), "--pairs 0: must be at least 1");
        assert_eq!(
            error("bench --icount"),
            "--icount: not an option of `cargo xtask bench`"
        );
        assert_eq!(
            error("bench --kvm"),
            "--kvm: not an option of `cargo xtask bench`"
        );
        assert_eq!(
            error("bench --out="),
            "--out: the directory must not be empty"
        );
        assert_eq!(
            error("run --pairs 3"),
            "--pairs: not an option of `cargo xtask run`"
        );
    }

    #[test]
    fn invalidation_option() {
        assert_eq!(
            run_options("run --invalidation deferred").invalidation,
            Invalidation::Deferred
        );
        assert_eq!(
            run_options("run --invalidation=strict --cpus 16").invalidation,
            Invalidation::Strict
        );
        assert_eq!(
            run_options("run --invalidation deferred --cpus 8").invalidation,
            Invalidation::Deferred
        );
        assert_eq!(
            error("run --invalidation lazy"),
            "--invalidation lazy: must be strict or deferred"
        );
        assert_eq!(
            error("run --invalidation=Deferred"),
            "--invalidation Deferred: must be strict or deferred"
        );
        assert_eq!(error("run --invalidation"), "--invalidation: needs a value");
        assert_eq!(
            error("run --invalidation deferred --cpus 9"),
            "--invalidation deferred: needs --cpus 8 or fewer (the kernel's deferred quickmap \
             instance serves at most 8 CPUs; 9 asked)"
        );
        assert_eq!(
            error("test --invalidation deferred"),
            "--invalidation: not an option of `cargo xtask test`"
        );
        assert_eq!(
            error("bench --invalidation strict"),
            "--invalidation: not an option of `cargo xtask bench`"
        );
        assert_eq!(Invalidation::Strict.kernel_word(), None);
        assert_eq!(
            Invalidation::Deferred.kernel_word().as_deref(),
            Some("invalidation=deferred")
        );
    }

    #[test]
    fn no_workload_flag() {
        assert!(!test_options("test --no-workload").workload);
        assert_eq!(
            error("test --no-workload --host-only"),
            "--no-workload: the workload is part of the kernel half, which --host-only \
             skips already"
        );
        assert_eq!(
            error("run --no-workload"),
            "--no-workload: not an option of `cargo xtask run`"
        );
    }

    #[test]
    fn every_error_is_one_line() {
        for line in [
            "",
            "x",
            "run --cpus 0",
            "run --icount --cpus 2",
            "test --test=a=b",
            "test --host-only --kernel-only",
            "run --invalidation lazy",
            "run --invalidation deferred --cpus 16",
        ] {
            assert!(!error(line).contains('\n'), "{line}");
        }
    }
}
