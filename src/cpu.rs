//! One CPU capability module for the whole crate.
//!
//! Every domain (matmul, quantize, VSA, gradient compression, precision)
//! picks its kernels from the same [`CpuLevel`]: detected once, cappable by
//! `TRITTER_CPU_LEVEL` (`scalar`, `avx2`, `avx512`, `avx512vnni`, `neon`),
//! reported through [`detected`] / [`active`] and the C export
//! `tritter_cpu_level`. A domain that has no kernel for the active level uses
//! its best kernel *below* it, never above: forcing `avx2` on an AVX-512
//! machine runs AVX2 (or scalar) code everywhere, which is how AVX2 paths are
//! tested and benchmarked on AVX-512 hosts.
//!
//! Levels are ordered: `Scalar < Avx2 < Avx512 < Avx512Vnni` on x86-64;
//! `Scalar < Neon` on aarch64. What each x86 level requires:
//!
//! | level | CPU features |
//! |---|---|
//! | `avx2` | AVX2, FMA, F16C, BMI1/2, POPCNT, LZCNT (every x86-64-v3 CPU: Haswell, Zen 1 and later) |
//! | `avx512` | `avx2` plus AVX-512 F, BW, DQ, VL, CD (x86-64-v4: Skylake-X, Zen 4 and later) |
//! | `avx512vnni` | `avx512` plus AVX-512 VNNI |
//!
//! Optional extras a kernel may test for within its level (each is reported
//! by [`Features`]): AVX-512 VPOPCNTDQ, BITALG, VBMI, BF16.

use std::sync::OnceLock;

/// A CPU instruction-set level. Ordered: a higher level implies every lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuLevel {
    /// Portable Rust (the reference every kernel is tested against).
    Scalar,
    /// x86-64-v3: AVX2, FMA, F16C, BMI1/2, POPCNT, LZCNT.
    Avx2,
    /// x86-64-v4: AVX-512 F/BW/DQ/VL/CD.
    Avx512,
    /// AVX-512 with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// aarch64 NEON (ASIMD).
    Neon,
}

impl CpuLevel {
    /// Every level, lowest first (x86 levels, then NEON).
    pub const LEVELS: [CpuLevel; 5] = [
        CpuLevel::Scalar,
        CpuLevel::Avx2,
        CpuLevel::Avx512,
        CpuLevel::Avx512Vnni,
        CpuLevel::Neon,
    ];

    /// The level's name (`scalar`, `avx2`, `avx512`, `avx512vnni`, `neon`).
    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "scalar",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512 => "avx512",
            CpuLevel::Avx512Vnni => "avx512vnni",
            CpuLevel::Neon => "neon",
        }
    }

    /// The level of a name as [`CpuLevel::name`] writes it (case-insensitive).
    pub fn from_name(name: &str) -> Option<CpuLevel> {
        let n = name.trim().to_ascii_lowercase();
        CpuLevel::LEVELS.into_iter().find(|l| l.name() == n)
    }

    /// The level's C code (`TRITTER_CPU_LEVEL_*`: 0 scalar, 1 avx2,
    /// 2 avx512, 3 avx512vnni, 16 neon).
    pub const fn code(self) -> u32 {
        match self {
            CpuLevel::Scalar => 0,
            CpuLevel::Avx2 => 1,
            CpuLevel::Avx512 => 2,
            CpuLevel::Avx512Vnni => 3,
            CpuLevel::Neon => 16,
        }
    }

    /// The level of a C code.
    pub fn from_code(code: u32) -> Option<CpuLevel> {
        CpuLevel::LEVELS.into_iter().find(|l| l.code() == code)
    }

    /// Whether this CPU can run code of this level.
    pub fn is_supported(self) -> bool {
        let f = features();
        match self {
            CpuLevel::Scalar => true,
            CpuLevel::Avx2 => f.x86_v3(),
            CpuLevel::Avx512 => f.x86_v4(),
            CpuLevel::Avx512Vnni => f.x86_v4() && f.avx512vnni,
            CpuLevel::Neon => f.neon,
        }
    }

    /// Whether a kernel written for `self` may run when `active` is the
    /// active level: same architecture family and not above it.
    pub fn allowed_under(self, active: CpuLevel) -> bool {
        match (self, active) {
            (CpuLevel::Scalar, _) => true,
            (CpuLevel::Neon, a) => a == CpuLevel::Neon,
            (_, CpuLevel::Neon) => false,
            (s, a) => s <= a,
        }
    }
}

impl std::fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The individual CPU features the kernels use, detected once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// AVX2.
    pub avx2: bool,
    /// FMA3.
    pub fma: bool,
    /// F16C (`vcvtph2ps` / `vcvtps2ph`).
    pub f16c: bool,
    /// BMI1.
    pub bmi1: bool,
    /// BMI2 (`pdep`, `pext`).
    pub bmi2: bool,
    /// POPCNT.
    pub popcnt: bool,
    /// LZCNT.
    pub lzcnt: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 BW.
    pub avx512bw: bool,
    /// AVX-512 DQ.
    pub avx512dq: bool,
    /// AVX-512 VL.
    pub avx512vl: bool,
    /// AVX-512 CD.
    pub avx512cd: bool,
    /// AVX-512 VNNI.
    pub avx512vnni: bool,
    /// AVX-512 VPOPCNTDQ.
    pub avx512vpopcntdq: bool,
    /// AVX-512 BITALG.
    pub avx512bitalg: bool,
    /// AVX-512 VBMI.
    pub avx512vbmi: bool,
    /// AVX-512 BF16.
    pub avx512bf16: bool,
    /// AVX-VNNI (the VEX-encoded `vpdpbusd` on 256-bit registers).
    pub avxvnni: bool,
    /// aarch64 NEON.
    pub neon: bool,
}

impl Features {
    fn detect() -> Features {
        #[allow(unused_mut)]
        let mut f = Features::default();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as d;
            f.avx2 = d!("avx2");
            f.fma = d!("fma");
            f.f16c = d!("f16c");
            f.bmi1 = d!("bmi1");
            f.bmi2 = d!("bmi2");
            f.popcnt = d!("popcnt");
            f.lzcnt = d!("lzcnt");
            f.avx512f = d!("avx512f");
            f.avx512bw = d!("avx512bw");
            f.avx512dq = d!("avx512dq");
            f.avx512vl = d!("avx512vl");
            f.avx512cd = d!("avx512cd");
            f.avx512vnni = d!("avx512vnni");
            f.avx512vpopcntdq = d!("avx512vpopcntdq");
            f.avx512bitalg = d!("avx512bitalg");
            f.avx512vbmi = d!("avx512vbmi");
            f.avx512bf16 = d!("avx512bf16");
            f.avxvnni = d!("avxvnni");
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
        }
        f
    }

    /// x86-64-v3 (the `avx2` level).
    pub fn x86_v3(&self) -> bool {
        self.avx2 && self.fma && self.f16c && self.bmi1 && self.bmi2 && self.popcnt && self.lzcnt
    }

    /// x86-64-v4 (the `avx512` level).
    pub fn x86_v4(&self) -> bool {
        self.x86_v3()
            && self.avx512f
            && self.avx512bw
            && self.avx512dq
            && self.avx512vl
            && self.avx512cd
    }

    /// The names of the features present, space-separated (for reports).
    pub fn names(&self) -> String {
        let all = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.bmi1, "bmi1"),
            (self.bmi2, "bmi2"),
            (self.popcnt, "popcnt"),
            (self.lzcnt, "lzcnt"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512dq, "avx512dq"),
            (self.avx512vl, "avx512vl"),
            (self.avx512cd, "avx512cd"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512vpopcntdq, "avx512vpopcntdq"),
            (self.avx512bitalg, "avx512bitalg"),
            (self.avx512vbmi, "avx512vbmi"),
            (self.avx512bf16, "avx512bf16"),
            (self.avxvnni, "avxvnni"),
            (self.neon, "neon"),
        ];
        all.iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The CPU's features (detected on first use).
pub fn features() -> &'static Features {
    static F: OnceLock<Features> = OnceLock::new();
    F.get_or_init(Features::detect)
}

/// The best level this CPU supports, ignoring `TRITTER_CPU_LEVEL`.
pub fn detected() -> CpuLevel {
    static D: OnceLock<CpuLevel> = OnceLock::new();
    *D.get_or_init(|| {
        CpuLevel::LEVELS
            .into_iter()
            .filter(|l| l.is_supported())
            .max_by_key(|l| match l {
                // NEON and the x86 levels never coexist; rank NEON above scalar.
                CpuLevel::Neon => 1,
                l => l.code(),
            })
            .unwrap_or(CpuLevel::Scalar)
    })
}

/// What `TRITTER_CPU_LEVEL` asked for, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// The variable is unset or empty.
    None,
    /// A supported level was forced.
    Applied(CpuLevel),
    /// A level above what the CPU supports was asked for; the detected level is used.
    Unsupported(CpuLevel),
    /// The value is not a level name; the detected level is used.
    Unknown(String),
}

fn read_override() -> Override {
    match std::env::var("TRITTER_CPU_LEVEL") {
        Err(_) => Override::None,
        Ok(v) if v.trim().is_empty() => Override::None,
        Ok(v) => match CpuLevel::from_name(&v) {
            Some(l) if l.is_supported() => Override::Applied(l),
            Some(l) => Override::Unsupported(l),
            None => Override::Unknown(v),
        },
    }
}

/// How `TRITTER_CPU_LEVEL` was applied (read once, with [`active`]).
pub fn override_status() -> &'static Override {
    static O: OnceLock<Override> = OnceLock::new();
    O.get_or_init(read_override)
}

/// The level every domain runs at: [`detected`], or the lower level named by
/// `TRITTER_CPU_LEVEL` (read once per process). A level the CPU lacks is
/// never used; [`override_status`] says what happened to the request.
pub fn active() -> CpuLevel {
    static A: OnceLock<CpuLevel> = OnceLock::new();
    *A.get_or_init(|| match override_status() {
        Override::Applied(l) => *l,
        _ => detected(),
    })
}

/// Every level this CPU supports, lowest first (for tests that run each
/// kernel at every level and print which ran and which were skipped).
pub fn supported_levels() -> Vec<CpuLevel> {
    CpuLevel::LEVELS
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

/// The x86 levels this CPU lacks (for test output: "skipped: avx512 ...").
pub fn unsupported_levels() -> Vec<CpuLevel> {
    CpuLevel::LEVELS
        .into_iter()
        .filter(|l| !l.is_supported())
        .filter(|l| {
            if cfg!(target_arch = "aarch64") {
                *l == CpuLevel::Neon
            } else {
                *l != CpuLevel::Neon
            }
        })
        .collect()
}

/// One line for test and bench output: the CPU model, the detected and
/// active level, and the levels a test run skips.
pub fn describe() -> String {
    let skipped: Vec<&str> = unsupported_levels().iter().map(|l| l.name()).collect();
    format!(
        "cpu: {} | detected {} | active {} | skipped levels: {}",
        cpu_model(),
        detected(),
        active(),
        if skipped.is_empty() {
            "none".to_string()
        } else {
            skipped.join(" ")
        }
    )
}

/// The CPU's model name (`/proc/cpuinfo` on Linux; `unknown` elsewhere).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Whether a kernel written for `kernel` may run when `requested` is the
/// level asked for: the CPU supports it and it is not above the request (the
/// one rule every domain's dispatcher applies; see the module docs).
#[inline]
pub fn runs(kernel: CpuLevel, requested: CpuLevel) -> bool {
    kernel.allowed_under(requested) && kernel.is_supported()
}

/// The kernel family a domain with scalar, AVX2 and (optionally) AVX-512
/// kernels runs for a requested level: the one chooser behind the VSA
/// popcounts, the quantizer and the gradient compressors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable Rust (the reference).
    Scalar,
    /// AVX2 kernels (the `avx2` level).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 kernels (the `avx512` level).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The highest kernel that [`runs`] under `requested` on this CPU.
    /// `avx512` says whether the domain has an AVX-512 kernel that can run
    /// here (and any extra feature it needs, e.g. VPOPCNTDQ, is present);
    /// without one an AVX-512 CPU runs the AVX2 kernels.
    pub(crate) fn pick(requested: CpuLevel, avx512: bool) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512 && runs(CpuLevel::Avx512, requested) {
                return Kernel::Avx512;
            }
            if runs(CpuLevel::Avx2, requested) {
                return Kernel::Avx2;
            }
        }
        let _ = (requested, avx512);
        Kernel::Scalar
    }
}

/// The levels a kernel test runs at: every level this CPU supports, lowest
/// first. Prints one line naming them and the x86 levels skipped (absent on
/// this CPU), e.g. `vsa counts: ran scalar avx2 | skipped avx512 avx512vnni`.
pub fn levels_for_test(what: &str) -> Vec<CpuLevel> {
    let ran = supported_levels();
    let names = |v: &[CpuLevel]| v.iter().map(|l| l.name()).collect::<Vec<_>>().join(" ");
    let skipped = unsupported_levels();
    let line = format!(
        "{what}: ran {} | skipped (not on this CPU) {}\n",
        names(&ran),
        if skipped.is_empty() {
            "none".to_string()
        } else {
            names(&skipped)
        }
    );
    // straight to file descriptor 2: the test harness captures the output
    // of passing tests (eprintln! and io::stderr alike)
    #[cfg(unix)]
    // SAFETY: writes line.len() bytes from a live buffer to fd 2.
    let _ = unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
    #[cfg(not(unix))]
    eprint!("{line}");
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_pick_is_the_highest_that_runs() {
        for l in CpuLevel::LEVELS {
            for avx512 in [false, true] {
                let k = Kernel::pick(l, avx512);
                let want = if avx512 && runs(CpuLevel::Avx512, l) {
                    "avx512"
                } else if runs(CpuLevel::Avx2, l) {
                    "avx2"
                } else {
                    "scalar"
                };
                let got = match k {
                    Kernel::Scalar => "scalar",
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => "avx2",
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => "avx512",
                };
                assert_eq!(got, want, "requested {l}, avx512 kernel {avx512}");
            }
        }
        assert_eq!(Kernel::pick(CpuLevel::Scalar, true), Kernel::Scalar);
    }

    #[test]
    fn names_round_trip() {
        for l in CpuLevel::LEVELS {
            assert_eq!(CpuLevel::from_name(l.name()), Some(l));
            assert_eq!(CpuLevel::from_code(l.code()), Some(l));
        }
        assert_eq!(CpuLevel::from_name(" AVX2 "), Some(CpuLevel::Avx2));
        assert_eq!(CpuLevel::from_name("sse"), None);
    }

    #[test]
    fn levels_are_consistent() {
        println!("{}", describe());
        assert!(CpuLevel::Scalar.is_supported());
        assert!(detected().is_supported());
        assert!(active().is_supported());
        assert!(active().allowed_under(detected()));
        // A higher x86 level implies the lower ones.
        let s = supported_levels();
        for w in [CpuLevel::Avx2, CpuLevel::Avx512, CpuLevel::Avx512Vnni].windows(2) {
            if s.contains(&w[1]) {
                assert!(s.contains(&w[0]), "{} without {}", w[1], w[0]);
            }
        }
    }

    #[test]
    fn allowed_under_orders_levels() {
        use CpuLevel::*;
        assert!(Scalar.allowed_under(Scalar));
        assert!(Avx2.allowed_under(Avx512Vnni));
        assert!(!Avx512.allowed_under(Avx2));
        assert!(!Neon.allowed_under(Avx2));
        assert!(!Avx2.allowed_under(Neon));
        assert!(Scalar.allowed_under(Neon));
    }
}
