//! The committed header must equal what cbindgen generates from the sources.
//! Regenerate with `TRITTER_BLESS=1 cargo test --test header`.

use std::path::PathBuf;

#[test]
fn header_matches_sources() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cfg = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(cfg)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    let generated = String::from_utf8(out).unwrap();
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
        } else if (t.starts_with("tritter_status_t ") || t.starts_with("void ")) && t.contains('(')
        {
            t.split_whitespace()
                .nth(1)
                .map(|n| n.trim_start_matches('*'))
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
    assert!(bad.is_empty(), "unprefixed names in the header: {bad:?}");
}
