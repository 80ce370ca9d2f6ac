//! Command-line parsing: turns `cargo xtask <command> [options]` into a validated
//! [`Command`], or one line that says what is wrong with it.
//!
//! clap reads the line ([`Cli`]): the commands, their options and defaults, the options
//! that exclude each other, and each value through a small parser that says what is
//! wrong with it (`--cpus 0: must be between 1 and 16`). What depends on two options
//! (a direct map within the guest memory, `--icount` on one CPU, `--invalidation
//! deferred` on at most 8) is checked after parsing, by the `validate` functions.
//!
//! The tool promises ONE error line and exit status 2 for a bad command line, where
//! clap prints its message, a usage line and a tip over several lines. So a clap error
//! is rendered here ([`error_line`]) from its kind and context, naming the option as
//! the user typed it; `help`, `--help` and `-h` keep clap's full text.

use std::error::Error as _;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub use crate::arch::Arch;
use crate::bench::lines::DEFERRED_MAX_CPUS;

/// Fewest and most CPUs a boot may have; 16 is what the kernel's per-CPU tables hold.
const CPU_RANGE: std::ops::RangeInclusive<u32> = 1..=16;
/// Smallest guest memory (MiB) the kernel is expected to boot in.
const MIN_MEMORY_MIB: u32 = 128;
/// Largest guest memory (MiB) accepted: a sanity bound against typos, not a QEMU limit.
const MAX_MEMORY_MIB: u32 = 1024 * 1024;
/// Default guest memory (MiB): large enough that most of it lies above the direct map.
const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Default direct-map size (MiB) for `test`; memory above it is reachable only through
/// quickmap.
const DEFAULT_DMAP_MIB: u32 = 256;
/// Default direct-map size (MiB) for `run` and `bench`: small, so that most of the
/// guest's memory is high memory and the window path does most of the work.
const DEFAULT_WORKLOAD_DMAP_MIB: u32 = 64;
/// Smallest direct map (MiB) the kernel accepts (`docs/kernel-protocol.md`).
const MIN_DMAP_MIB: u32 = 32;
/// Default CPUs of `cargo xtask run`: enough for the per-CPU windows to matter.
const DEFAULT_RUN_CPUS: u32 = 4;
/// Default CPU counts of `cargo xtask test`: one kernel suite each, so SMP,
/// migration and shootdowns are exercised at every scale the kernel is tested at.
const DEFAULT_TEST_CPUS: [u32; 4] = [1, 2, 4, 8];
/// Default CPU counts of the benchmark's throughput boots.
const DEFAULT_BENCH_CPUS: [u32; 3] = [1, 2, 4];
/// Default per-boot timeout in seconds: generous, because TCG with many CPUs is slow.
const DEFAULT_TIMEOUT_SECS: u64 = 300;

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
}

/// Options of `cargo xtask build`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildOptions {
    /// Show the commands run.
    pub verbose: bool,
    /// The architecture to build for.
    pub arch: Arch,
}

/// The value of `test --arch`: one architecture, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum ArchSelection {
    /// x86_64 only.
    #[value(name = "x86_64")]
    X86_64,
    /// aarch64 only.
    #[value(name = "aarch64")]
    Aarch64,
    /// Both, x86_64 first (the host checks run once).
    #[default]
    All,
}

impl ArchSelection {
    fn arches(self) -> Vec<Arch> {
        match self {
            ArchSelection::X86_64 => vec![Arch::X86_64],
            ArchSelection::Aarch64 => vec![Arch::Aarch64],
            ArchSelection::All => Arch::ALL.to_vec(),
        }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Invalidation {
    /// Every remove invalidates (the kernel's default).
    #[default]
    Strict,
    /// Removed write-back windows stay mapped until the CPU's next local full flush;
    /// needs --cpus 8 or fewer.
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
    pub out_dir: Option<PathBuf>,
}

/// Options of `cargo xtask test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOptions {
    /// The kernel part runs once per architecture, in this order.
    pub arches: Vec<Arch>,
    /// One kernel suite runs per entry, in this order.
    pub cpu_counts: Vec<u32>,
    /// Everything else about the machine, shared by every boot; its `arch` is the
    /// first of [`arches`](Self::arches), and the command sets each in turn.
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
    /// The architecture of the kernel and of QEMU's machine.
    pub arch: Arch,
}

/// Why the command line gives nothing to run.
#[derive(Debug)]
pub enum CliError {
    /// `help`, `--help` or `-h`, of the tool or of a command: clap's help text, which
    /// [`clap::Error::print`] writes to stdout. Exit status 0.
    Help(clap::Error),
    /// A bad command line: what is wrong, on one line. Exit status 2.
    Usage(String),
}

/// Parses the command line, program name first (as [`std::env::args_os`] gives it).
pub fn parse_args<I, T>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = Cli::try_parse_from(&args).map_err(|error| match error.kind() {
        ErrorKind::DisplayHelp => CliError::Help(error),
        _ => CliError::Usage(error_line(&error, command_name(&args).as_deref())),
    })?;
    cli.command.validate().map_err(CliError::Usage)
}

/// Builds, boots and tests the qmk kernel, the proving ground of quickmap.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    max_term_width = 100,
    // No command is an error line like any other, not the help text on stderr.
    arg_required_else_help = false,
    after_help = "\
Environment:
  QMK_QEMU=PATH     QEMU binary to use (default: qemu-system-x86_64, or
                    qemu-system-aarch64 with --arch aarch64, from PATH)
  QMK_KERNEL=PATH   boot this ELF instead of building qmk/
  QMK_OBJDUMP=PATH  objdump for the static check (default: objdump from PATH)
  QMK_LOG_DIR=DIR   where serial logs go (default: target/qmk-logs)

Exit status: 0 success, 1 a build, boot or test failed (run: the workload failed or
found a mismatch; bench: a boot failed or a variant is missing, while a missed target
is reported but not a failure), 2 bad command line.

`cargo xtask help <command>` lists a command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: CommandArgs,
}

#[derive(Debug, Subcommand)]
enum CommandArgs {
    /// Build the qmk kernel and print the ELF path.
    Build(BuildArgs),
    /// Build the kernel and run its page workload (mode=run) with a live progress bar,
    /// then print a summary table.
    Run(RunArgs),
    /// Run every test: host (cargo test, fmt, clippy), then the kernel part: static
    /// check of the ELF, the kernel suite, a short workload.
    Test(TestArgs),
    /// Boot the benchmark (mode=bench): the checked and the lean kernel once each with
    /// icount on 1 CPU, the checked one once per CPU count; print tables, check
    /// targets, write bench.json and throughput.svg.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The architecture to build for.
    #[arg(long, value_name = "ARCH", value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// Show the cargo command.
    #[arg(long)]
    verbose: bool,
}

// Here and in `TestArgs` and `BenchArgs`, numeric options take `-1` as their value, so
// that it is reported as not a whole number rather than as an unknown option `-1`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
struct RunArgs {
    /// The architecture to boot.
    #[arg(long, value_name = "ARCH", value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// CPUs to boot, 1..=16.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RUN_CPUS,
          value_parser = one_cpu_count)]
    cpus: u32,
    #[command(flatten)]
    machine: MachineArgs,
    #[command(flatten)]
    accel: AccelArgs,
    /// Stop the workload after N operations in all (ops=N).
    #[arg(long, value_name = "N", value_parser = at_least_one, conflicts_with = "secs")]
    ops: Option<u64>,
    /// Stop the workload after N seconds of guest time (secs=N). Neither --ops nor
    /// --secs: the kernel's default.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    secs: Option<u64>,
    /// The kernel's quickmap instance the workload drives (invalidation=MODE).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Invalidation::Strict)]
    invalidation: Invalidation,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
struct TestArgs {
    /// The architectures whose kernel part runs (the host checks run once).
    #[arg(long, value_name = "ARCH", value_enum, default_value_t = ArchSelection::All)]
    arch: ArchSelection,
    /// CPU counts, one kernel suite each, e.g. 1,2,4 [default: 1,2,4,8, or 1 with
    /// --icount].
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    cpus: Option<CpuList>,
    #[command(flatten)]
    machine: MachineArgs,
    #[command(flatten)]
    accel: AccelArgs,
    /// Run only kernel tests whose name contains FILTER (exact name wins); skips the
    /// static check and the workload.
    #[arg(long = "test", value_name = "FILTER", value_parser = kernel_test_filter,
          conflicts_with = "host_only")]
    filter: Option<String>,
    /// Run only the host tests.
    #[arg(long, conflicts_with = "kernel_only")]
    host_only: bool,
    /// Run only the kernel part.
    #[arg(long)]
    kernel_only: bool,
    /// Skip the short workload boots after the kernel suites (run-workload: mode=run
    /// ops=10000 on 4 CPUs, 1 with --icount; once with each invalidation, strict and
    /// deferred).
    #[arg(long, conflicts_with = "host_only")]
    no_workload: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
struct BenchArgs {
    /// The architecture to measure.
    #[arg(long, value_name = "ARCH", value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// CPU counts of the throughput boots, one boot each, e.g. 1,2,4 [default: 1,2,4].
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    cpus: Option<CpuList>,
    #[command(flatten)]
    machine: MachineArgs,
    /// Enter+access+remove pairs per variant (pairs=N) [default: the kernel's].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pairs: Option<u64>,
    /// Where bench.json and throughput.svg go [default: target/bench].
    #[arg(long = "out", value_name = "DIR", value_parser = out_dir)]
    out_dir: Option<PathBuf>,
}

/// The options of every command that boots the kernel.
#[derive(Debug, Args)]
struct MachineArgs {
    /// Guest memory in MiB, at least 128.
    #[arg(long, value_name = "MiB", default_value_t = DEFAULT_MEMORY_MIB,
          value_parser = memory_mib)]
    memory: u32,
    /// Size of the kernel's direct map in MiB: even, at least 32, at most --memory
    /// [default: 64 for run and bench, so that most memory is high memory; 256 for
    /// test].
    #[arg(long, value_name = "MiB", value_parser = dmap_mib)]
    dmap: Option<u32>,
    /// Kill QEMU after this long, per boot.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = timeout_seconds)]
    timeout: u64,
    /// Seed (u64) passed to the kernel.
    #[arg(long, value_name = "N", value_parser = whole_number::<u64>)]
    seed: Option<u64>,
    /// Show the QEMU command line (and, for test, all serial output).
    #[arg(long)]
    verbose: bool,
}

/// How QEMU runs the CPUs, for `run` and `test` (`bench` chooses icount per boot
/// itself, and its throughput figures are TCG figures, DESIGN.md §5).
#[derive(Debug, Args, Default)]
struct AccelArgs {
    /// Deterministic instruction counting (-icount shift=0); 1 CPU, TCG only.
    #[arg(long, conflicts_with = "kvm")]
    icount: bool,
    /// Use KVM instead of TCG (opt-in; TCG is the supported accelerator).
    #[arg(long)]
    kvm: bool,
}

/// The value of `--cpus` for `test` and `bench`: CPU counts, in order, no repeats.
#[derive(Debug, Clone)]
struct CpuList(Vec<u32>);

/// The options that exclude each other (`conflicts_with` above) and why: clap knows
/// only that they do, and the error line should say why.
const CONFLICTS: [(&str, &str, &str); 5] = [
    ("--host-only", "--kernel-only", "give neither to run both"),
    (
        "--test",
        "--host-only",
        "the filter selects kernel tests, and --host-only skips the kernel suite",
    ),
    (
        "--no-workload",
        "--host-only",
        "the workload is part of the kernel half, which --host-only skips already",
    ),
    (
        "--ops",
        "--secs",
        "give a number of operations or a duration, not both",
    ),
    ("--icount", "--kvm", "instruction counting is a TCG feature"),
];

impl CommandArgs {
    /// The checks clap cannot express: those between two options' values.
    fn validate(self) -> Result<Command, String> {
        match self {
            CommandArgs::Build(args) => Ok(Command::Build(BuildOptions {
                verbose: args.verbose,
                arch: args.arch,
            })),
            CommandArgs::Run(args) => args.validate().map(Command::Run),
            CommandArgs::Test(args) => args.validate().map(Command::Test),
            CommandArgs::Bench(args) => args.validate().map(Command::Bench),
        }
    }
}

impl RunArgs {
    fn validate(self) -> Result<RunOptions, String> {
        let machine = self.machine.validate(
            &[self.arch],
            &[self.cpus],
            &self.accel,
            DEFAULT_WORKLOAD_DMAP_MIB,
        )?;
        if self.invalidation == Invalidation::Deferred && self.cpus > DEFERRED_MAX_CPUS {
            return Err(format!(
                "--invalidation deferred: needs --cpus {DEFERRED_MAX_CPUS} or fewer (the \
                 kernel's deferred quickmap instance serves at most {DEFERRED_MAX_CPUS} CPUs; \
                 {} asked)",
                self.cpus
            ));
        }
        Ok(RunOptions {
            cpus: self.cpus,
            machine,
            // clap lets one of the two through at most.
            stop: self
                .ops
                .map(WorkloadStop::Ops)
                .or(self.secs.map(WorkloadStop::Secs)),
            invalidation: self.invalidation,
        })
    }
}

impl TestArgs {
    fn validate(self) -> Result<TestOptions, String> {
        // icount runs on one CPU only (QEMU 7.2 hangs starting a second one), so
        // `--icount` without `--cpus` means one CPU rather than an error.
        let cpu_counts = match self.cpus {
            Some(CpuList(counts)) => counts,
            None if self.accel.icount => vec![1],
            None => DEFAULT_TEST_CPUS.to_vec(),
        };
        let arches = self.arch.arches();
        let machine = self
            .machine
            .validate(&arches, &cpu_counts, &self.accel, DEFAULT_DMAP_MIB)?;
        // clap lets one of the two through at most.
        let scope = match (self.host_only, self.kernel_only) {
            (true, _) => TestScope::HostOnly,
            (_, true) => TestScope::KernelOnly,
            _ => TestScope::All,
        };
        Ok(TestOptions {
            arches,
            cpu_counts,
            machine,
            filter: self.filter,
            scope,
            workload: !self.no_workload,
        })
    }
}

impl BenchArgs {
    fn validate(self) -> Result<BenchOptions, String> {
        let cpu_counts = self
            .cpus
            .map_or_else(|| DEFAULT_BENCH_CPUS.to_vec(), |CpuList(counts)| counts);
        let machine = self.machine.validate(
            &[self.arch],
            &cpu_counts,
            &AccelArgs::default(),
            DEFAULT_WORKLOAD_DMAP_MIB,
        )?;
        Ok(BenchOptions {
            cpu_counts,
            machine,
            pairs: self.pairs,
            out_dir: self.out_dir,
        })
    }
}

impl MachineArgs {
    /// The machine of boots of `arches` (at least one; the first goes into the
    /// options) with `cpu_counts` CPUs; `default_dmap_mib` is the command's direct map
    /// when `--dmap` is not given.
    fn validate(
        self,
        arches: &[Arch],
        cpu_counts: &[u32],
        accel: &AccelArgs,
        default_dmap_mib: u32,
    ) -> Result<MachineOptions, String> {
        let memory_mib = self.memory;
        let dmap_mib = match self.dmap {
            None if default_dmap_mib <= memory_mib => default_dmap_mib,
            // --memory below the default direct map: map all of memory directly
            // (rounded down to even, as the kernel maps 2 MiB pages).
            None => memory_mib & !1,
            Some(mib) if mib > memory_mib => {
                return Err(format!(
                    "--dmap {mib}: must not exceed the guest memory ({memory_mib} MiB)"
                ))
            }
            Some(mib) => mib,
        };
        if accel.icount && cpu_counts.iter().any(|&cpus| cpus != 1) {
            let why = "QEMU 7.2 hangs starting a second CPU under -icount shift=0, DESIGN.md §5";
            return Err(format!("--icount: needs --cpus 1 ({why})"));
        }
        if accel.kvm && arches.iter().any(|&arch| arch != Arch::X86_64) {
            return Err(format!(
                "--kvm: needs --arch x86_64 (KVM runs guests of the host's architecture \
                 only; {} asked)",
                arches
                    .iter()
                    .map(|arch| arch.word())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        Ok(MachineOptions {
            memory_mib,
            dmap_mib,
            timeout: Duration::from_secs(self.timeout),
            icount: accel.icount,
            seed: self.seed,
            accel: if accel.kvm { Accel::Kvm } else { Accel::Tcg },
            verbose: self.verbose,
            arch: arches[0],
        })
    }
}

// The value parsers. Each error says what is wrong with the value; [`error_line`]
// puts the option and the value in front of it.

fn whole_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| "not a non-negative whole number".to_string())
}

/// `--ops`, `--secs`, `--pairs`.
fn at_least_one(text: &str) -> Result<u64, String> {
    match whole_number(text)? {
        0 => Err("must be at least 1".to_string()),
        value => Ok(value),
    }
}

fn cpu_count(item: &str) -> Result<u32, String> {
    let cpus = item
        .parse()
        .map_err(|_| format!("'{item}' is not a number (give e.g. 4 or 1,2,4)"))?;
    if !CPU_RANGE.contains(&cpus) {
        return Err(format!(
            "must be between {} and {}",
            CPU_RANGE.start(),
            CPU_RANGE.end()
        ));
    }
    Ok(cpus)
}

/// `--cpus` of `run`.
fn one_cpu_count(text: &str) -> Result<u32, String> {
    if text.contains(',') {
        return Err("`run` boots one machine, give a single CPU count".to_string());
    }
    cpu_count(text)
}

/// `--cpus` of `test` and `bench`: one count, or a comma-separated list without repeats.
fn cpu_list(text: &str) -> Result<CpuList, String> {
    let mut counts = Vec::new();
    for item in text.split(',') {
        let cpus = cpu_count(item)?;
        if counts.contains(&cpus) {
            return Err(format!("{cpus} is listed twice"));
        }
        counts.push(cpus);
    }
    Ok(CpuList(counts))
}

fn memory_mib(text: &str) -> Result<u32, String> {
    let mib = whole_number(text)?;
    if mib < MIN_MEMORY_MIB {
        return Err(format!("must be at least {MIN_MEMORY_MIB} (MiB)"));
    }
    if mib > MAX_MEMORY_MIB {
        return Err(format!("must be at most {MAX_MEMORY_MIB} (MiB)"));
    }
    Ok(mib)
}

/// `--dmap`, as far as it does not depend on `--memory`.
fn dmap_mib(text: &str) -> Result<u32, String> {
    let mib = whole_number(text)?;
    if mib < MIN_DMAP_MIB {
        return Err(format!(
            "must be at least {MIN_DMAP_MIB} (MiB), the kernel's minimum"
        ));
    }
    if mib % 2 != 0 {
        return Err("must be even (the kernel maps it with 2 MiB pages)".to_string());
    }
    Ok(mib)
}

fn timeout_seconds(text: &str) -> Result<u64, String> {
    match whole_number(text)? {
        0 => Err("must be at least 1 (seconds)".to_string()),
        seconds => Ok(seconds),
    }
}

/// The filter becomes one `test=FILTER` word of the kernel command line, so it cannot
/// hold a space (word separator) or `=` (key separator).
fn kernel_test_filter(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the filter must not be empty".to_string());
    }
    if text.chars().any(|c| c.is_whitespace() || c == '=') {
        let why = "it goes on the kernel command line";
        return Err(format!("must be one word without spaces or '=' ({why})"));
    }
    Ok(text.to_string())
}

fn out_dir(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the directory must not be empty".to_string());
    }
    Ok(PathBuf::from(text))
}

/// The command the arguments name, if the first one names one: error lines say which
/// command an option is wrong for.
fn command_name(args: &[OsString]) -> Option<String> {
    let name = args.get(1)?.to_str()?;
    Cli::command()
        .find_subcommand(name)
        .map(|command| command.get_name().to_string())
}

/// One line for a clap error, from its kind and context: clap's own rendering spans
/// several lines (message, usage, tip).
fn error_line(error: &clap::Error, command: Option<&str>) -> String {
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => text.as_str(),
        Some(ContextValue::Strings(texts)) => texts.first().map_or("", String::as_str),
        _ => "",
    };
    let strings = |kind| match error.get(kind) {
        Some(ContextValue::Strings(texts)) => texts.clone(),
        _ => Vec::new(),
    };
    // clap names an option with its value, as in `--cpus <N>`: keep the option.
    let option = context(ContextKind::InvalidArg)
        .split(' ')
        .next()
        .unwrap_or_default();
    let value = context(ContextKind::InvalidValue);
    match error.kind() {
        ErrorKind::ValueValidation => {
            let why = error.source().map(ToString::to_string).unwrap_or_default();
            match value {
                "" => format!("{option}: {why}"),
                value if value.contains(char::is_whitespace) => {
                    format!("{option} '{value}': {why}")
                }
                value => format!("{option} {value}: {why}"),
            }
        }
        ErrorKind::InvalidValue if value.is_empty() => format!("{option}: needs a value"),
        ErrorKind::InvalidValue => format!(
            "{option} {value}: must be {}",
            one_of(&strings(ContextKind::ValidValue))
        ),
        ErrorKind::TooManyValues => format!("{option}: takes no value"),
        ErrorKind::ArgumentConflict => {
            let prior = context(ContextKind::PriorArg)
                .split(' ')
                .next()
                .unwrap_or_default();
            if prior == option {
                format!("{option}: given more than once")
            } else {
                conflict_line(option, prior)
            }
        }
        ErrorKind::UnknownArgument => unknown_argument_line(
            context(ContextKind::InvalidArg),
            command,
            context(ContextKind::SuggestedArg),
        ),
        ErrorKind::InvalidSubcommand => format!(
            "unknown command '{}' (expected {})",
            context(ContextKind::InvalidSubcommand),
            command_names()
        ),
        ErrorKind::MissingSubcommand => format!(
            "missing command (expected {}; see `cargo xtask help`)",
            command_names()
        ),
        // Anything else: clap's message, which is its first line.
        _ => {
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    }
}

/// `build, run, test, bench or help`.
fn command_names() -> String {
    let mut cli = Cli::command();
    // Building adds clap's `help` command.
    cli.build();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|command| command.get_name().to_string())
        .collect();
    one_of(&names)
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [word] => word.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Two options that exclude each other, with the reason from [`CONFLICTS`].
fn conflict_line(option: &str, other: &str) -> String {
    let known = CONFLICTS
        .iter()
        .find(|&&(a, b, _)| (a, b) == (option, other) || (b, a) == (option, other));
    match known {
        Some((a, b, why)) => format!("{a} and {b} exclude each other ({why})"),
        None => format!("{option} and {other} exclude each other"),
    }
}

/// An argument no option of `command` takes, with clap's `suggestion` (or none:
/// empty). An option of another command says so, which is the likely mistake (`cargo
/// xtask run --test x`).
fn unknown_argument_line(argument: &str, command: Option<&str>, suggestion: &str) -> String {
    let for_command = command.map_or(String::new(), |name| format!(" for `cargo xtask {name}`"));
    if !argument.starts_with('-') {
        return format!("unexpected argument '{argument}'{for_command} (options start with --)");
    }
    let elsewhere = Cli::command().get_subcommands().any(|other| {
        other.get_arguments().any(|arg| {
            arg.get_long()
                .is_some_and(|long| argument == format!("--{long}"))
        })
    });
    if let (true, Some(name)) = (elsewhere, command) {
        return format!("{argument}: not an option of `cargo xtask {name}`");
    }
    let hint = match (suggestion, command) {
        ("", Some(name)) => format!("see `cargo xtask {name} --help`"),
        ("", None) => "see `cargo xtask --help`".to_string(),
        (suggested, _) => format!("did you mean '{suggested}'?"),
    };
    format!("unknown option '{argument}'{for_command} ({hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CliError> {
        parse_args(std::iter::once("xtask").chain(line.split_whitespace()))
    }

    fn error(line: &str) -> String {
        match parse(line) {
            Err(CliError::Usage(message)) => message,
            Err(CliError::Help(_)) => panic!("`{line}` asked for help"),
            Ok(command) => panic!("`{line}` parsed as {command:?}"),
        }
    }

    fn command(line: &str) -> Command {
        match parse(line) {
            Ok(command) => command,
            Err(CliError::Usage(message)) => panic!("`{line}`: {message}"),
            Err(CliError::Help(_)) => panic!("`{line}` asked for help"),
        }
    }

    fn test_options(line: &str) -> TestOptions {
        match command(line) {
            Command::Test(options) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    fn bench_options(line: &str) -> BenchOptions {
        match command(line) {
            Command::Bench(options) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    fn run_options(line: &str) -> RunOptions {
        match command(line) {
            Command::Run(options) => options,
            other => panic!("`{line}` gave {other:?}"),
        }
    }

    /// The help text `line` asks for, with every run of white space made one space
    /// (clap wraps it to the terminal's width).
    fn help(line: &str) -> String {
        match parse(line) {
            Err(CliError::Help(help)) => help
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            _ => panic!("`{line}` did not ask for help"),
        }
    }

    #[test]
    fn clap_accepts_the_definition() {
        Cli::command().debug_assert();
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
                timeout: Duration::from_secs(300),
                icount: false,
                seed: None,
                accel: Accel::Tcg,
                verbose: false,
                arch: Arch::X86_64,
            }
        );
        let test = test_options("test");
        assert_eq!(test.arches, [Arch::X86_64, Arch::Aarch64]);
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
        assert_eq!(bench.machine.arch, Arch::X86_64);
        assert_eq!(
            command("build"),
            Command::Build(BuildOptions {
                verbose: false,
                arch: Arch::X86_64
            })
        );
    }

    #[test]
    fn help_spellings() {
        for line in ["help", "--help", "-h"] {
            let text = help(line);
            assert!(
                text.contains("Usage: cargo xtask <COMMAND>"),
                "{line}: {text}"
            );
            assert!(text.contains("QMK_LOG_DIR=DIR"), "{line}: {text}");
        }
        // A command's help lists its options, with their defaults.
        for line in [
            "test --help",
            "test -h",
            "help test",
            "test --kernel-only -h",
        ] {
            let text = help(line);
            assert!(text.contains("Usage: cargo xtask test [OPTIONS]"), "{line}");
            assert!(text.contains("--no-workload"), "{line}: {text}");
            assert!(text.contains("[default: 2048]"), "{line}: {text}");
        }
        let run = help("run --help");
        assert!(run.contains("strict"), "{run}");
        assert!(run.contains("deferred"), "{run}");
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
            command("build --verbose --arch aarch64"),
            Command::Build(BuildOptions {
                verbose: true,
                arch: Arch::Aarch64
            })
        );
    }

    #[test]
    fn arch_option() {
        assert_eq!(test_options("test --arch x86_64").arches, [Arch::X86_64]);
        let aarch64 = test_options("test --arch=aarch64 --kernel-only");
        assert_eq!(aarch64.arches, [Arch::Aarch64]);
        assert_eq!(aarch64.machine.arch, Arch::Aarch64);
        assert_eq!(
            test_options("test --arch all").arches,
            [Arch::X86_64, Arch::Aarch64]
        );
        assert_eq!(
            run_options("run --arch aarch64").machine.arch,
            Arch::Aarch64
        );
        assert_eq!(run_options("run").machine.arch, Arch::X86_64);
        assert_eq!(
            bench_options("bench --arch aarch64").machine.arch,
            Arch::Aarch64
        );
        assert_eq!(
            error("test --arch arm64"),
            "--arch arm64: must be x86_64, aarch64 or all"
        );
        assert_eq!(
            error("run --arch all"),
            "--arch all: must be x86_64 or aarch64"
        );
        assert_eq!(
            error("bench --arch riscv64"),
            "--arch riscv64: must be x86_64 or aarch64"
        );
        assert_eq!(error("build --arch"), "--arch: needs a value");
        assert_eq!(
            error("run --arch aarch64 --arch x86_64"),
            "--arch: given more than once"
        );
        assert_eq!(
            error("run --kvm --arch aarch64"),
            "--kvm: needs --arch x86_64 (KVM runs guests of the host's architecture only; \
             aarch64 asked)"
        );
        assert_eq!(
            error("test --kvm"),
            "--kvm: needs --arch x86_64 (KVM runs guests of the host's architecture only; \
             x86_64 and aarch64 asked)"
        );
        assert!(test_options("test --kvm --arch x86_64").machine.accel == Accel::Kvm);
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
        assert_eq!(
            error("run --cpus -1"),
            "--cpus -1: '-1' is not a number (give e.g. 4 or 1,2,4)"
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
            "--icount and --kvm exclude each other (instruction counting is a TCG feature)"
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
            "--test and --host-only exclude each other (the filter selects kernel tests, \
             and --host-only skips the kernel suite)"
        );
        let parse_words = |words: &[&str]| match parse_args(words) {
            Err(CliError::Usage(message)) => message,
            other => panic!("{words:?} gave {other:?}"),
        };
        assert_eq!(
            parse_words(&["xtask", "test", "--test", ""]),
            "--test: the filter must not be empty"
        );
        assert_eq!(
            parse_words(&["xtask", "test", "--test", "a b"]),
            "--test 'a b': must be one word without spaces or '=' (it goes on the \
             kernel command line)"
        );
        assert!(error("test --test=a=b").starts_with("--test a=b: must be one word"));
    }

    #[test]
    fn scope_conflict() {
        assert_eq!(
            error("test --host-only --kernel-only"),
            "--host-only and --kernel-only exclude each other (give neither to run both)"
        );
        assert_eq!(
            error("test --kernel-only --host-only"),
            "--host-only and --kernel-only exclude each other (give neither to run both)"
        );
    }

    #[test]
    fn every_conflict_has_a_reason() {
        let mut declared = Vec::new();
        let mut cli = Cli::command();
        cli.build();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                for other in command.get_arg_conflicts_with(arg) {
                    let long = |arg: &clap::Arg| format!("--{}", arg.get_long().unwrap());
                    let (a, b) = (long(arg), long(other));
                    assert!(
                        CONFLICTS
                            .iter()
                            .any(|&(x, y, _)| (x, y) == (&a, &b) || (y, x) == (&a, &b)),
                        "{a} and {b} conflict in `{}` without a reason",
                        command.get_name()
                    );
                    declared.push((a, b));
                }
            }
        }
        for (a, b, _) in CONFLICTS {
            assert!(
                declared.contains(&(a.to_string(), b.to_string())),
                "{a} and {b} are not declared to conflict"
            );
        }
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
        assert_eq!(
            error("--frobnicate"),
            "unknown option '--frobnicate' (see `cargo xtask --help`)"
        );
    }

    #[test]
    fn option_shape_errors() {
        assert_eq!(
            error("test --frobnicate"),
            "unknown option '--frobnicate' for `cargo xtask test` (see `cargo xtask test \
             --help`)"
        );
        assert_eq!(
            error("test --kernelonly"),
            "unknown option '--kernelonly' for `cargo xtask test` (did you mean \
             '--kernel-only'?)"
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
        assert_eq!(bench.out_dir, Some(PathBuf::from("/tmp/b")));
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
        // The word the kernel reads is the word clap accepts.
        for invalidation in Invalidation::ALL {
            let value = invalidation.to_possible_value().unwrap();
            assert_eq!(value.get_name(), invalidation.word());
        }
    }

    #[test]
    fn no_workload_flag() {
        assert!(!test_options("test --no-workload").workload);
        assert_eq!(
            error("test --no-workload --host-only"),
            "--no-workload and --host-only exclude each other (the workload is part of the \
             kernel half, which --host-only skips already)"
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
            "--x",
            "run --cpus 0",
            "run --cpus",
            "run --kvm=1",
            "run --x",
            "run --kvm --kvm",
            "run --icount --cpus 2",
            "run --icount --kvm --cpus 1",
            "test --test=a=b",
            "test --host-only --kernel-only",
            "run --invalidation lazy",
            "run --invalidation deferred --cpus 16",
            "run --arch all",
            "test --arch arm",
            "test --kvm",
            "help nothing",
        ] {
            let message = error(line);
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{line}: {message:?}"
            );
        }
    }
}
