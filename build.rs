//! Link settings of the shipped binary: the static musl release build of
//! `drainit` drops its unwind tables (see link/no-unwind-tables.ld).
//! Other builds (tests, debug, glibc, the library, drainit-check) are
//! linked as cargo would: they unwind, or their libc may.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=link/no-unwind-tables.ld");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let shipped = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "musl"
        && var("PROFILE") == "release";
    if !shipped {
        return;
    }
    let script = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/no-unwind-tables.ld");
    println!("cargo::rustc-link-arg-bin=drainit=-Wl,--no-eh-frame-hdr");
    println!(
        "cargo::rustc-link-arg-bin=drainit=-Wl,-T,{}",
        script.display()
    );
}
