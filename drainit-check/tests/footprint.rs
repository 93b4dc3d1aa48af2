//! The PID-1 binary must not carry the Kubernetes API types: k8s-openapi
//! and the YAML parser are dependencies of drainit-check only. Asked of
//! cargo itself (`cargo tree`, offline: the lock file is complete), so a
//! dependency added to the root crate by mistake fails here.

mod common;

use std::process::Command;

#[test]
fn drainit_does_not_depend_on_the_kubernetes_types() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |package: &str| {
        let output = Command::new(&cargo)
            .current_dir(common::repo_root())
            .args([
                "tree",
                "--offline",
                "--locked",
                "-e",
                "normal",
                "-p",
                package,
            ])
            .output()
            .expect("run cargo tree");
        assert!(
            output.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let drainit = tree("drainit");
    assert!(drainit.starts_with("drainit v"), "{drainit}");
    for heavy in ["k8s-openapi", "serde-saphyr"] {
        assert!(
            !drainit.contains(heavy),
            "drainit depends on {heavy}:\n{drainit}"
        );
        // The same query does see it where it belongs.
        assert!(
            tree("drainit-check").contains(heavy),
            "drainit-check lacks {heavy}"
        );
    }
}
