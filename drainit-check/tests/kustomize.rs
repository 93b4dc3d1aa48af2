//! The Kustomize component of `examples/kustomize/drainit-install` (issue
//! 21): `kubectl kustomize` (kubectl 1.32, kustomize 5) renders the nginx
//! example through it, the output carries the volume, the init container
//! running `drainit install` and `/drainit-bin/drainit --` in front of
//! nginx's own command, and the real `drainit-check` finds no error in it.

mod common;

use std::process::Command;

fn render(example: &str) -> String {
    let dir = common::repo_root().join("examples/kustomize").join(example);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl (scripts/test.sh needs it at /usr/bin/kubectl)");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 YAML")
}

#[test]
fn the_component_puts_drainit_in_front_of_an_unmodified_image() {
    let rendered = render("nginx");
    let deployment: serde_json::Value = rendered
        .split("\n---\n")
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .find(|doc| doc["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("no Deployment in:\n{rendered}"));
    let pod = &deployment["spec"]["template"]["spec"];
    let app = &pod["containers"][0];
    assert_eq!(app["image"], "nginx:1.27", "the image stays the vendor's");
    assert_eq!(
        app["command"],
        serde_json::json!(["/drainit-bin/drainit", "--", "/docker-entrypoint.sh"]),
        "{rendered}"
    );
    assert_eq!(
        app["args"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(
        app["volumeMounts"],
        serde_json::json!([{"name": "drainit-bin", "mountPath": "/drainit-bin", "readOnly": true}])
    );
    let init = &pod["initContainers"][0];
    assert_eq!(init["args"], serde_json::json!(["install", "/drainit-bin"]));
    assert_eq!(init["volumeMounts"][0]["mountPath"], "/drainit-bin");
    assert_eq!(pod["volumes"][0]["name"], "drainit-bin");
    assert!(pod["volumes"][0]["emptyDir"].is_object(), "{rendered}");
}

#[test]
fn the_checker_finds_no_error_in_the_rendered_output() {
    let rendered = render("nginx");
    let run = common::check_with(
        &["--format", "json", "--fail-on", "error", "-"],
        Some(&rendered),
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.report());
    let errors: Vec<_> = run
        .json()
        .into_iter()
        .filter(|finding| finding["severity"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{}", run.report());
}
