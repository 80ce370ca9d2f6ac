//! Turns options into the two command lines of a boot: the kernel's (`-append`) and
//! QEMU's. Pure functions, so the exact words are unit-tested.

use std::path::Path;

use crate::cli::{Accel, MachineOptions};

/// What a boot does (`mode=` on the kernel command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// The page workload.
    Run,
    /// Print the test list.
    List,
    /// Run tests.
    Test,
    /// The benchmark.
    Bench,
}

impl BootMode {
    /// The word the kernel expects after `mode=`.
    pub fn word(self) -> &'static str {
        match self {
            BootMode::Run => "run",
            BootMode::List => "list",
            BootMode::Test => "test",
            BootMode::Bench => "bench",
        }
    }
}

/// Everything that defines one boot.
#[derive(Debug, Clone)]
pub struct BootSpec<'a> {
    /// What the boot does.
    pub mode: BootMode,
    /// `test=` filter or exact name (only with [`BootMode::Test`]).
    pub test: Option<&'a str>,
    /// Number of CPUs.
    pub cpus: u32,
    /// Memory, direct map, accelerator, seed...
    pub machine: &'a MachineOptions,
    /// Mode-specific `key=value` words appended to the kernel command line (`ops=`,
    /// `pairs=`, `icount=1`...).
    pub extra_words: Vec<String>,
}

impl BootSpec<'_> {
    /// The kernel command line: space-separated `key=value` words.
    pub fn kernel_cmdline(&self) -> String {
        let mut words = vec![format!("mode={}", self.mode.word())];
        if let Some(test) = self.test {
            words.push(format!("test={test}"));
        }
        words.push(format!("dmap={}", self.machine.dmap_mib));
        if let Some(seed) = self.machine.seed {
            words.push(format!("seed={seed}"));
        }
        words.extend(self.extra_words.iter().cloned());
        words.join(" ")
    }

    /// QEMU's arguments (without the program name) to boot `kernel`.
    pub fn qemu_args(&self, kernel: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-kernel".into(),
            kernel.display().to_string(),
            "-append".into(),
            self.kernel_cmdline(),
            "-nographic".into(),
            // A guest reset (triple fault) must end QEMU, not loop forever.
            "-no-reboot".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
            // No network card: its option ROM (iPXE) only slows the boot and adds
            // noise to the serial output.
            "-nic".into(),
            "none".into(),
            // The kernel's way to report success (0x10) or failure (0x11).
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=4".into(),
            "-accel".into(),
            self.accel_arg().into(),
            "-cpu".into(),
            "max".into(),
            "-m".into(),
            self.machine.memory_mib.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
        ];
        if self.machine.icount {
            args.extend(["-icount".into(), "shift=0".into()]);
        }
        self.machine.arch.adapt_qemu_args(args)
    }

    fn accel_arg(&self) -> &'static str {
        match (self.machine.accel, self.machine.icount) {
            (Accel::Kvm, _) => "kvm",
            // QEMU refuses multi-threaded TCG together with icount ("No MTTCG when
            // icount is enabled"); icount boots have one CPU anyway.
            (Accel::Tcg, true) => "tcg",
            // One host thread per guest CPU: real parallelism for SMP tests.
            (Accel::Tcg, false) => "tcg,thread=multi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn machine() -> MachineOptions {
        MachineOptions {
            memory_mib: 2048,
            dmap_mib: 256,
            timeout: Duration::from_secs(1),
            icount: false,
            seed: None,
            accel: Accel::Tcg,
            verbose: false,
            arch: crate::arch::Arch::X86_64,
        }
    }

    #[test]
    fn kernel_cmdline_words() {
        let mut m = machine();
        let spec = BootSpec {
            mode: BootMode::Run,
            test: None,
            cpus: 1,
            machine: &m,
            extra_words: Vec::new(),
        };
        assert_eq!(spec.kernel_cmdline(), "mode=run dmap=256");
        m.seed = Some(7);
        m.dmap_mib = 512;
        let spec = BootSpec {
            mode: BootMode::Test,
            test: Some("window"),
            cpus: 4,
            machine: &m,
            extra_words: Vec::new(),
        };
        assert_eq!(
            spec.kernel_cmdline(),
            "mode=test test=window dmap=512 seed=7"
        );
        let spec = BootSpec {
            mode: BootMode::Bench,
            test: None,
            extra_words: vec!["pairs=10".into(), "icount=1".into()],
            ..spec
        };
        assert_eq!(
            spec.kernel_cmdline(),
            "mode=bench dmap=512 seed=7 pairs=10 icount=1"
        );
        assert_eq!(BootMode::List.word(), "list");
    }

    #[test]
    fn qemu_command_line() {
        let m = machine();
        let spec = BootSpec {
            mode: BootMode::Test,
            test: None,
            cpus: 4,
            machine: &m,
            extra_words: Vec::new(),
        };
        assert_eq!(
            spec.qemu_args(Path::new("/k/qmk")).join(" "),
            "-kernel /k/qmk -append mode=test dmap=256 -nographic -no-reboot -serial stdio \
             -monitor none -nic none -device isa-debug-exit,iobase=0xf4,iosize=4 \
             -accel tcg,thread=multi -cpu max -m 2048 -smp 4"
        );
    }

    #[test]
    fn icount_uses_single_threaded_tcg() {
        let m = MachineOptions {
            icount: true,
            ..machine()
        };
        let spec = BootSpec {
            mode: BootMode::Run,
            test: None,
            cpus: 1,
            machine: &m,
            extra_words: Vec::new(),
        };
        let args = spec.qemu_args(Path::new("k")).join(" ");
        assert!(args.contains("-accel tcg -cpu"), "{args}");
        assert!(args.ends_with("-smp 1 -icount shift=0"), "{args}");
    }

    #[test]
    fn kvm_is_opt_in() {
        let m = MachineOptions {
            accel: Accel::Kvm,
            ..machine()
        };
        let spec = BootSpec {
            mode: BootMode::Run,
            test: None,
            cpus: 2,
            machine: &m,
            extra_words: Vec::new(),
        };
        assert!(spec
            .qemu_args(Path::new("k"))
            .join(" ")
            .contains("-accel kvm -cpu max"));
    }
}
