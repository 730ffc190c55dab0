//! The binary as a person meets it before any API answers: its help, its completion, and bad input refused in one
//! line with a non-zero exit (the end-to-end tests against a running stack are in `reflexion-api/tests/plugin.rs`,
//! which also need this package's binary built: an integration test here is what makes `cargo test --workspace`
//! build it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-reflexion"))
        .args(args)
        .env_remove("REFLEXION_API_URL")
        .env_remove("REFLEXION_API_TOKEN")
        .output()
        .expect("kubectl-reflexion runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_names_every_command() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for cmd in [
        "incidents",
        "show",
        "approve",
        "reject",
        "memory",
        "explain",
        "completion",
    ] {
        assert!(out.contains(cmd), "{cmd} in {out}");
    }
}

#[test]
fn completion_scripts_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, _) = run(&["completion", shell]);
        assert!(
            ok && out.contains("kubectl-reflexion") && out.contains("approve"),
            "{shell}"
        );
    }
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["incidents", "--api-url", "ftp://x"],
            "error: --api-url \"ftp://x\" is not an http(s) URL",
        ),
        (
            &["incidents", "--api-url", "http://127.0.0.1:1"],
            "error: cannot reach reflexion-api at http://127.0.0.1:1/",
        ),
        (
            &["show", "x", "--token-file", "/nonexistent/token"],
            "error: --token-file /nonexistent/token:",
        ),
        (
            &["approve", "x", "--api-url", "http://127.0.0.1:1", "--yes"],
            "error: cannot reach reflexion-api",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, err) = run(args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
    }
    // clap's own refusals exit non-zero too.
    let (ok, _, err) = run(&["incidents", "-o", "toml"]);
    assert!(!ok && err.contains("invalid value 'toml'"), "{err}");
}
