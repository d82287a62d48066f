//! Builds every C/C++ program in `ffi-tests/` and `examples/` against the public headers and
//! the library cargo just built, and runs it: linked to the shared library,
//! to the static library, under AddressSanitizer + UBSan, and under valgrind
//! (definite leaks and memory errors fail).
//!
//! A program passes when it exits 0. Environment:
//! * `TRITTER_REQUIRE_VALGRIND=1`: a missing valgrind fails instead of skipping.
//! * `TRITTER_FFI_ONLY=name`: run only `ffi-tests/name.*`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the C programs find libtritter_accel.{so,a}: `target/ffi-lib/<profile>`.
/// `cargo test` builds only the rlib, so the first call runs `cargo build --lib`
/// for the same profile into that separate target dir (in the shared one, the
/// lib-only build's differently-featured dependencies would confuse doctests).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let target = profile_dir.parent().unwrap().join("ffi-lib");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--lib", "--quiet"])
                .arg("--target-dir")
                .arg(&target)
                .current_dir(root());
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("failed to run cargo build");
            assert!(st.success(), "cargo build --lib failed");
            let dir = target.join(if release { "release" } else { "debug" });
            assert!(
                dir.join("libtritter_accel.so").is_file(),
                "no libtritter_accel.so in {}",
                dir.display()
            );
            dir
        })
        .clone()
}

fn programs() -> Vec<PathBuf> {
    let only = std::env::var("TRITTER_FFI_ONLY").ok();
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("ffi-tests"))
        .unwrap()
        .chain(std::fs::read_dir(root().join("examples")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("c" | "cpp")))
        .filter(|p| only.as_deref().is_none_or(|o| p.file_stem().unwrap() == o))
        .collect();
    v.sort();
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Shared,
    Static,
    Sanitize,
    Valgrind,
}

fn compiler(cpp: bool) -> Command {
    let target = "x86_64-unknown-linux-gnu";
    let host_target = std::env::var("TARGET").unwrap_or_else(|_| {
        if cfg!(target_arch = "aarch64") {
            "aarch64-unknown-linux-gnu".into()
        } else {
            target.into()
        }
    });
    cc::Build::new()
        .cpp(cpp)
        .target(&host_target)
        .host(&host_target)
        .opt_level(1)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler()
        .to_command()
}

fn build(src: &Path, mode: Mode) -> PathBuf {
    let cpp = src.extension().unwrap() == "cpp";
    let name = src.file_stem().unwrap().to_str().unwrap();
    let tag = match mode {
        Mode::Shared => "shared",
        Mode::Static => "static",
        Mode::Sanitize => "asan",
        Mode::Valgrind => "valgrind",
    };
    let out_dir = lib_dir().join("ffi-tests").join(tag);
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(format!("{name}{}", if cpp { "-cpp" } else { "" }));
    let mut cmd = compiler(cpp);
    cmd.args(["-Wall", "-Wextra", "-Werror", "-g"]);
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" });
    if !cpp {
        cmd.arg("-Wpedantic");
    }
    cmd.arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("ffi-tests"));
    if mode == Mode::Sanitize {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ]);
    }
    cmd.arg(src).arg("-o").arg(&exe);
    let dir = lib_dir();
    match mode {
        Mode::Static => {
            cmd.arg(dir.join("libtritter_accel.a"));
        }
        _ => {
            cmd.arg("-L")
                .arg(&dir)
                .arg("-ltritter_accel")
                .arg(format!("-Wl,-rpath,{}", dir.display()));
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let out = cmd.output().expect("failed to start the C compiler");
    assert!(
        out.status.success(),
        "compiling {} ({tag}) failed:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run(mut cmd: Command, what: &str) {
    // cargo's LD_LIBRARY_PATH (target/<profile>, .../deps) outranks the
    // programs' RUNPATH and can hold a stale libtritter_accel.so from an older
    // cdylib build: the programs must load the library just built.
    cmd.env_remove("LD_LIBRARY_PATH");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    eprintln!(
        "{what}: {}",
        text.lines()
            .filter(|l| l.contains("passed") || l.contains(": ok"))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

fn each(mode: Mode, f: impl Fn(PathBuf, &Path)) {
    let progs = programs();
    assert!(!progs.is_empty(), "no programs in ffi-tests/");
    for p in progs {
        let exe = build(&p, mode);
        f(exe, &p);
    }
}

#[test]
fn c_programs_shared() {
    each(Mode::Shared, |exe, src| {
        run(Command::new(exe), &format!("{} (shared)", src.display()))
    });
}

#[test]
fn c_programs_static() {
    each(Mode::Static, |exe, src| {
        run(Command::new(exe), &format!("{} (static)", src.display()))
    });
}

#[test]
fn c_programs_asan_ubsan() {
    each(Mode::Sanitize, |exe, src| {
        let mut c = Command::new(exe);
        c.env(
            "ASAN_OPTIONS",
            // allocator_may_return_null: ASan's malloc returns NULL for an
            // impossible size (as the system's does) instead of aborting, so
            // the library's out-of-memory path runs (ffi-tests/hardening.c).
            "detect_leaks=1:abort_on_error=0:exitcode=86:allocator_may_return_null=1",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
        run(c, &format!("{} (ASan+UBSan)", src.display()))
    });
}

#[test]
fn c_programs_valgrind() {
    let have = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var_os("TRITTER_REQUIRE_VALGRIND").is_none(),
            "valgrind is required but not installed"
        );
        eprintln!("valgrind not installed: skipped");
        return;
    }
    each(Mode::Valgrind, |exe, src| {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
            "--error-exitcode=99",
        ])
        .arg(exe)
        .env("TRITTER_NUM_THREADS", "2");
        run(c, &format!("{} (valgrind)", src.display()))
    });
}

/// The installed library works for a consumer that knows only pkg-config.
#[test]
fn installed_consumer_via_pkg_config() {
    if Command::new("pkg-config")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("TRITTER_REQUIRE_VALGRIND").is_none(),
            "pkg-config is required but missing"
        );
        eprintln!("pkg-config not installed: skipped");
        return;
    }
    let prefix = lib_dir().join("ffi-tests").join("prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let st = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg(&prefix)
        .env("LIB_DIR", lib_dir())
        .status()
        .unwrap();
    assert!(st.success(), "scripts/install.sh failed");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "tritter_accel"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .unwrap();
    assert!(
        flags.status.success(),
        "pkg-config failed: {}",
        String::from_utf8_lossy(&flags.stderr)
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = prefix.join("quickstart");
    let mut cc = compiler(false);
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(root().join("examples/quickstart.c"))
        .arg("-o")
        .arg(&exe);
    cc.args(flags.split_whitespace());
    let out = cc.output().unwrap();
    assert!(
        out.status.success(),
        "consumer build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(
        Command::new(&exe),
        "pkg-config consumer (examples/quickstart.c)",
    );
}
