//! The committed header must equal what cbindgen generates from the sources.
//! Regenerate with `TRITTER_BLESS=1 cargo test --test header`.

use std::path::PathBuf;

/// The header cbindgen makes from the sources now.
fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cfg = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    // Only the C ABI module (src/ffi and its submodules) is parsed: core
    // `pub const`s and types never reach the header, with no exclude list
    // to keep up to date.
    cbindgen::Builder::new()
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(cfg)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

/// Function prototypes of a header: (text before the name, name), with
/// comments, preprocessor lines and `extern "C" {` removed.
fn prototypes(h: &str) -> Vec<(String, String)> {
    let mut text = String::new();
    let mut rest = h;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find("*/").expect("closed comment") + 2..];
    }
    text.push_str(rest);
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("extern \"C\" {", "");
    let mut v = Vec::new();
    for stmt in text.split(';') {
        let s = stmt.trim().trim_start_matches('}').trim();
        let Some(open) = s.find('(') else { continue };
        let head = &s[..open];
        // struct and enum bodies, initializers
        if head.contains('{') || head.contains('}') || head.contains('=') {
            continue;
        }
        let mut words: Vec<&str> = head.split_whitespace().collect();
        let Some(name) = words.pop() else { continue };
        v.push((words.join(" "), name.trim_start_matches('*').to_string()));
    }
    v
}

/// Number of `#[no_mangle]` items under src/ffi (every one is a function).
fn exports_in_sources() -> usize {
    let mut n = 0;
    let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/ffi")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let s = std::fs::read_to_string(&p).unwrap();
                n += s.lines().filter(|l| l.trim() == "#[no_mangle]").count();
            }
        }
    }
    n
}

#[test]
fn header_matches_sources() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let generated = generate();
    let path = root.join("include/tritter_accel.h");
    if std::env::var_os("TRITTER_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/tritter_accel.h is out of date; run `TRITTER_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn version_macros_match_cargo() {
    let h = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/tritter_accel.h"),
    )
    .unwrap();
    for (name, v) in [
        ("TRITTER_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("TRITTER_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("TRITTER_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            h.contains(&format!("#define {name} {v}")),
            "{name} in the header differs from Cargo.toml ({v})"
        );
    }
    let s = unsafe { std::ffi::CStr::from_ptr(tritter_accel::ffi::runtime::tritter_version()) };
    assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// Every name the header defines is in the library's namespace: a bare
/// `#define BLOCK 1024` would collide with the including program's macros.
#[test]
fn every_exported_name_is_prefixed() {
    let h = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/tritter_accel.h"),
    )
    .unwrap();
    let mut bad = Vec::new();
    for line in h.lines() {
        let t = line.trim_start();
        let name = if let Some(r) = t.strip_prefix("#define ") {
            r.split_whitespace().next()
        } else if let Some(r) = t.strip_prefix("typedef struct ") {
            r.split_whitespace().next()
        } else {
            None
        };
        if let Some(n) = name {
            let n = n.split('(').next().unwrap();
            if !(n.starts_with("tritter_") || n.starts_with("TRITTER_")) {
                bad.push(n.to_string());
            }
        }
    }
    for (_, name) in prototypes(&h) {
        if !name.starts_with("tritter_") {
            bad.push(name);
        }
    }
    assert!(bad.is_empty(), "unprefixed names in the header: {bad:?}");
}

/// Every export that returns a status is `#[must_use]` in Rust, so the
/// header marks it `TRITTER_MUST_USE` and C compilers warn when a caller
/// ignores the status. Checks the header generated from the sources now, so
/// a new export without the attribute fails here even before the header is
/// regenerated.
#[test]
fn every_status_returning_export_is_must_use() {
    let protos = prototypes(&generate());
    // the parser sees every export (so none can slip past the checks below)
    assert_eq!(protos.len(), exports_in_sources(), "prototypes: {protos:?}");
    let status: Vec<_> = protos
        .iter()
        .filter(|(ret, _)| ret.split_whitespace().any(|w| w == "tritter_status_t"))
        .collect();
    assert!(
        status.len() > 50,
        "found only {} status exports",
        status.len()
    );
    let missing: Vec<&str> = status
        .iter()
        .filter(|(ret, _)| !ret.split_whitespace().any(|w| w == "TRITTER_MUST_USE"))
        .map(|(_, n)| n.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "status-returning exports without #[must_use] (add it above #[no_mangle]): {missing:?}"
    );
    // Nothing else carries it (a void or pointer-returning export has no status to check).
    for (ret, name) in &protos {
        if ret.contains("TRITTER_MUST_USE") {
            assert!(ret.contains("tritter_status_t"), "{name}: {ret}");
        }
    }
}
