//! The domain crate stays free of I/O: no NATS, database, HTTP or socket crate in its
//! dependency tree (tokio appears only through cqrs-es, without its I/O driver).

use std::process::Command;

#[test]
fn the_domain_crate_depends_on_no_io_crate() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "covenant-domain", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).expect("utf8");
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"covenant-domain") && names.contains(&"cqrs-es"), "unexpected tree:\n{tree}");
    let forbidden =
        ["async-nats", "sqlx", "sqlx-core", "axum", "hyper", "reqwest", "tokio-postgres", "mio", "socket2", "tonic"];
    let found: Vec<&&str> = forbidden.iter().filter(|f| names.contains(f)).collect();
    assert!(found.is_empty(), "covenant-domain pulls in I/O crates {found:?}:\n{tree}");
}

#[test]
fn the_domain_crate_names_no_runtime_directly() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../domain/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
    for crate_name in ["tokio", "async-nats", "sqlx", "axum"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(crate_name)),
            "domain depends on {crate_name} directly"
        );
    }
}
