//! What a container's main process does, from its image's behaviour, the pod's `command`/`args`, its environment
//! and the test author's annotations: the lines it logs, whether and when it exits and with which code, how much
//! memory it uses, and which ports and paths it serves.

use crate::catalog::{Behaviour, Serves};
use crate::{quantity, shell};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    RunsForever,
    Exits {
        after: Duration,
        code: i32,
    },
    /// The runtime cannot start the process (`StartError`, exit 128).
    StartError {
        message: String,
    },
}

/// What the container's main process does when the kubelet sends SIGTERM to stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigterm {
    /// It shuts down and exits with this code.
    Exits(i32),
    /// PID 1 with no handler for the signal (a shell, `sleep`): nothing happens until SIGKILL ends the grace period.
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Program {
    pub logs: Vec<String>,
    pub outcome: Outcome,
    pub memory_bytes: f64,
    pub serves: Vec<Serves>,
    pub on_sigterm: Sigterm,
}

/// What a process (a shell, a tool) uses before the image's own program adds its share.
const PROCESS_MEMORY: f64 = 1024.0 * 1024.0;

/// Annotation keys test authors use on a pod (a `.<container>` suffix targets one container).
pub const ANN_EXIT_CODE: &str = "simcluster.io/exit-code";
pub const ANN_EXIT_AFTER: &str = "simcluster.io/exit-after";
pub const ANN_MEMORY: &str = "simcluster.io/memory-usage";
/// Seconds after the kubelet admits the pod at which it evicts it for node memory pressure.
pub const ANN_EVICT_AFTER: &str = "simcluster.io/evict-after";

pub fn annotation<'a>(annotations: &'a Value, key: &str, container: &str) -> Option<&'a str> {
    annotations
        .get(format!("{key}.{container}"))
        .or_else(|| annotations.get(key))
        .and_then(Value::as_str)
}

/// Resolve the program of a container. `env` holds the container's resolved environment; `memory_paths` the mount
/// paths of its memory-backed volumes.
pub fn program(
    container: &Value,
    behaviour: &Behaviour,
    env: &BTreeMap<String, String>,
    annotations: &Value,
    memory_paths: &[String],
    network: &dyn crate::network::Network,
) -> Program {
    let name = container["name"].as_str().unwrap_or_default();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let command = strings(&container["command"]);
    let args = strings(&container["args"]);
    // Docker semantics: command replaces ENTRYPOINT (and drops CMD); args replace CMD.
    let mut argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (false, _) => command.into_iter().chain(args).collect(),
        (true, false) => behaviour.entrypoint.iter().cloned().chain(args).collect(),
        (true, true) => behaviour
            .entrypoint
            .iter()
            .chain(behaviour.cmd.iter())
            .cloned()
            .collect(),
    };
    // `env [A=1] sh -c ...` runs what follows.
    if argv
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("env"))
        && behaviour.base.has("env")
    {
        let skip = 1 + argv[1..].iter().take_while(|w| w.contains('=')).count();
        if skip < argv.len() {
            argv.drain(..skip);
        }
    }
    let ctx = shell::Context {
        behaviour,
        env,
        memory_paths,
        network,
    };
    let mut p = Program {
        logs: Vec::new(),
        outcome: Outcome::RunsForever,
        memory_bytes: PROCESS_MEMORY,
        serves: Vec::new(),
        on_sigterm: Sigterm::Ignored,
    };
    match argv.first() {
        None => {
            p.outcome = Outcome::StartError {
                message: "no command specified".into(),
            }
        }
        Some(argv0) => match behaviour.base.shell(argv0) {
            Some(sh) => match argv
                .iter()
                .position(|a| a == "-c")
                .and_then(|i| argv.get(i + 1))
            {
                Some(script) => shell::run_script(script, sh, argv0, &ctx, &mut p),
                // A shell with no script and no terminal reads EOF and exits 0.
                None => {
                    p.outcome = Outcome::Exits {
                        after: shell::IMMEDIATE,
                        code: 0,
                    }
                }
            },
            None if shell::image_has(&ctx, argv0) => shell::run_argv(&argv, &ctx, &mut p),
            None => {
                p.outcome = Outcome::StartError {
                    message: not_in_image(argv0),
                }
            }
        },
    }
    if let Some(mem) = annotation(annotations, ANN_MEMORY, name).and_then(quantity::parse) {
        p.memory_bytes = mem;
    }
    if let Some(code) = annotation(annotations, ANN_EXIT_CODE, name).and_then(|c| c.parse().ok()) {
        let after = annotation(annotations, ANN_EXIT_AFTER, name)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(1.0);
        p.outcome = Outcome::Exits {
            after: Duration::from_secs_f64(after),
            code,
        };
    }
    p
}

/// runc's words for a command the image does not have.
fn not_in_image(argv0: &str) -> String {
    let why = if argv0.starts_with('/') || argv0.starts_with("./") {
        format!("stat {argv0}: no such file or directory")
    } else {
        "executable file not found in $PATH".to_string()
    };
    format!(
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: \"{argv0}\": {why}: unknown"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;
    use serde_json::json;

    fn run(image: &str, container: Value, env: &[(&str, &str)], ann: Value) -> Program {
        run_with(image, container, env, ann, &[])
    }

    fn run_with(
        image: &str,
        container: Value,
        env: &[(&str, &str)],
        ann: Value,
        memory_paths: &[String],
    ) -> Program {
        let catalog = Catalog::builtin();
        let mut c = container;
        c["name"] = json!("c");
        c["image"] = json!(image);
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        program(
            &c,
            &catalog.behaviour(image),
            &env,
            &ann,
            memory_paths,
            &crate::network::Offline,
        )
    }

    const MI: f64 = 1024.0 * 1024.0;

    fn sh(script: &str) -> Value {
        json!({"command": ["sh", "-c", script]})
    }

    #[test]
    fn images_have_what_their_base_ships() {
        let dd_then_nginx =
            "dd if=/dev/zero of=/tmp/warm bs=1M count=300 && exec nginx -g 'daemon off;'";
        // (image, container, outcome, logs, memory in MiB, served ports)
        let cases: Vec<(&str, Value, Outcome, Vec<&str>, f64, Vec<u16>)> = vec![
            // A file written under /tmp is page cache charged to the container's memory.
            (
                "nginx:1.27-alpine",
                sh(dd_then_nginx),
                Outcome::RunsForever,
                vec![
                    "300+0 records in",
                    "300+0 records out",
                    "314572800 bytes (300.0MB) copied, 0.259346 seconds, 1.1GB/s",
                    "/docker-entrypoint.sh: Configuration complete; ready for start up",
                    "nginx: [notice] start worker processes",
                ],
                309.0,
                vec![80],
            ),
            (
                "nginx:1.27",
                sh(
                    "dd if=/dev/zero of=/data/warm bs=1M count=300 2>/dev/null; nginx -g 'daemon off;'",
                ),
                Outcome::RunsForever,
                vec![
                    "300+0 records in",
                    "300+0 records out",
                    "314572800 bytes (315 MB, 300 MiB) copied, 0.12 s, 2.6 GB/s",
                    "/docker-entrypoint.sh: Configuration complete; ready for start up",
                    "nginx: [notice] start worker processes",
                ],
                9.0,
                vec![80],
            ),
            // Debian's /bin/sh is dash; it has no wget.
            (
                "nginx:1.27",
                json!({"command": ["/bin/sh", "-c", "start-my-server"]}),
                exits(300, 127),
                vec!["/bin/sh: 1: start-my-server: not found"],
                1.0,
                vec![],
            ),
            (
                "nginx:1.27",
                sh("wget -qO- http://api:8080/ready"),
                exits(300, 127),
                vec!["sh: 1: wget: not found"],
                1.0,
                vec![],
            ),
            (
                "busybox:1.36",
                sh("wget -qO- http://api:8080/ready || exit 3"),
                exits(300, 3),
                vec!["wget: bad address 'api'"],
                1.0,
                vec![],
            ),
            (
                "ubuntu:24.04",
                json!({"command": ["bash", "-c", "nc -l -p 9000"]}),
                exits(300, 127),
                vec!["bash: line 1: nc: command not found"],
                1.0,
                vec![],
            ),
            (
                "busybox:1.36",
                json!({"command": ["nc", "-lk", "-p", "9000"]}),
                Outcome::RunsForever,
                vec![],
                1.0,
                vec![9000],
            ),
            (
                "busybox",
                sh("echo one; false; echo two"),
                exits(300, 0),
                vec!["one", "two"],
                1.0,
                vec![],
            ),
            (
                "busybox",
                sh("false && echo no || echo yes"),
                exits(300, 0),
                vec!["yes"],
                1.0,
                vec![],
            ),
            (
                "redis:7.4",
                sh("redis-cli ping; exec redis-server --appendonly yes"),
                Outcome::RunsForever,
                vec!["1:M * Ready to accept connections tcp"],
                5.0,
                vec![6379],
            ),
            // The image's entrypoint checks its environment; a shell running something else does not.
            (
                "postgres:17",
                sh("sleep 2"),
                exits(2000, 0),
                vec![],
                1.0,
                vec![],
            ),
        ];
        for (image, container, outcome, logs, mib, ports) in cases {
            let p = run(image, container.clone(), &[], json!({}));
            assert_eq!(p.outcome, outcome, "{image} {container}");
            assert_eq!(p.logs, logs, "{image} {container}");
            assert_eq!(p.memory_bytes / MI, mib, "{image} {container}");
            let served: Vec<u16> = p.serves.iter().map(|s| s.port).collect();
            assert_eq!(served, ports, "{image} {container}");
        }
        let p = run_with(
            "busybox",
            sh("dd if=/dev/zero of=/cache/blob bs=1M count=64; sleep infinity"),
            &[],
            json!({}),
            &["/cache".to_string()],
        );
        assert_eq!(p.memory_bytes / MI, 65.0, "a memory-backed emptyDir counts");
        for (image, container, why) in [
            (
                "alpine:3.20",
                json!({"command": ["bash", "-c", "echo hi"]}),
                "exec: \"bash\": executable file not found in $PATH",
            ),
            (
                "kubereflexion/demo-app:1.0.0",
                sh("echo hi"),
                "exec: \"sh\": executable file not found in $PATH",
            ),
            (
                "busybox",
                json!({"command": ["stress", "--vm", "1"]}),
                "exec: \"stress\": executable file not found in $PATH",
            ),
        ] {
            let p = run(image, container, &[], json!({}));
            assert!(
                matches!(&p.outcome, Outcome::StartError { message } if message.contains(why)),
                "{image}: {:?}",
                p.outcome
            );
        }
    }

    #[test]
    fn stopping_takes_the_grace_period_only_for_processes_that_ignore_sigterm() {
        for (image, container, want) in [
            ("nginx:1.27", json!({}), Sigterm::Exits(0)),
            (
                "busybox",
                json!({"command": ["sleep", "3600"]}),
                Sigterm::Ignored,
            ),
            (
                "busybox",
                sh("while true; do sleep 1; done"),
                Sigterm::Ignored,
            ),
            (
                "busybox",
                sh("trap 'exit 0' TERM; while true; do sleep 1; done"),
                Sigterm::Exits(0),
            ),
            (
                "nginx:1.27-alpine",
                sh("exec nginx -g 'daemon off;'"),
                Sigterm::Exits(0),
            ),
            ("python:3.12", json!({}), Sigterm::Ignored),
        ] {
            assert_eq!(
                run(image, container.clone(), &[], json!({})).on_sigterm,
                want,
                "{image} {container}"
            );
        }
    }

    fn exits(after_ms: u64, code: i32) -> Outcome {
        Outcome::Exits {
            after: Duration::from_millis(after_ms),
            code,
        }
    }

    #[test]
    fn programs_behave_like_their_images_and_commands() {
        let no_ann = json!({});
        let cases: Vec<(&str, Value, Vec<(&str, &str)>, Outcome, Vec<&str>)> = vec![
            (
                "nginx:1.27",
                json!({}),
                vec![],
                Outcome::RunsForever,
                vec![
                    "/docker-entrypoint.sh: Configuration complete; ready for start up",
                    "nginx: [notice] start worker processes",
                ],
            ),
            // The seed's crash: busybox that prints, sleeps 5 s and exits 1.
            (
                "busybox",
                json!({"command": ["sh", "-c", "echo 'Başladım'; sleep 5; exit 1"]}),
                vec![],
                exits(5000, 1),
                vec!["Başladım"],
            ),
            ("busybox", json!({}), vec![], exits(300, 0), vec![]),
            (
                "busybox",
                json!({"command": ["sh", "-c", "while true; do echo hi; sleep 1; done"]}),
                vec![],
                Outcome::RunsForever,
                vec!["hi"],
            ),
            (
                "busybox",
                json!({"command": ["sh", "-c", "echo start && run-app"]}),
                vec![],
                exits(300, 127),
                vec!["start", "sh: run-app: not found"],
            ),
            (
                "busybox",
                json!({"args": ["sh", "-c", "echo $GREETING ${NAME}!"]}),
                vec![("GREETING", "hello"), ("NAME", "sre")],
                exits(300, 0),
                vec!["hello sre!"],
            ),
            (
                "busybox",
                json!({"command": ["sleep", "3600"]}),
                vec![],
                exits(3_600_000, 0),
                vec![],
            ),
            (
                "busybox",
                json!({"command": ["sleep", "infinity"]}),
                vec![],
                Outcome::RunsForever,
                vec![],
            ),
            (
                "postgres:17",
                json!({}),
                vec![],
                exits(300, 1),
                vec![
                    "Error: Database is uninitialized and superuser password is not specified. You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.",
                ],
            ),
            (
                "postgres:17",
                json!({}),
                vec![("POSTGRES_PASSWORD", "x")],
                Outcome::RunsForever,
                vec!["LOG:  database system is ready to accept connections"],
            ),
            (
                "kubereflexion/demo-app:1.0.0",
                json!({}),
                vec![],
                exits(300, 1),
                vec!["fatal: required environment variable DATABASE_URL is not set"],
            ),
            ("python:3.12", json!({}), vec![], exits(300, 0), vec![]),
        ];
        for (image, container, env, outcome, logs) in cases {
            let p = run(image, container.clone(), &env, no_ann.clone());
            assert_eq!(p.outcome, outcome, "{image} {container}");
            assert_eq!(p.logs, logs, "{image} {container}");
        }
    }

    #[test]
    fn stress_uses_the_memory_it_is_told_to() {
        let p = run(
            "polinux/stress",
            json!({"args": ["--vm", "1", "--vm-bytes", "500M"]}),
            &[],
            json!({}),
        );
        assert_eq!((p.outcome, p.memory_bytes), (Outcome::RunsForever, 500e6));
        let p = run(
            "polinux/stress",
            json!({"command": ["stress", "--vm", "2", "--vm-bytes", "100M", "--timeout", "10s"]}),
            &[],
            json!({}),
        );
        assert_eq!((p.outcome, p.memory_bytes), (exits(10_000, 0), 200e6));
    }

    #[test]
    fn missing_binaries_fail_to_start() {
        let p = run(
            "nginx:1.27",
            json!({"command": ["/app/server"]}),
            &[],
            json!({}),
        );
        assert!(
            matches!(p.outcome, Outcome::StartError { ref message } if message.contains("stat /app/server: no such file or directory"))
        );
        let p = run(
            "nginx:1.27",
            json!({"command": ["gunicorn", "app"]}),
            &[],
            json!({}),
        );
        assert!(
            matches!(p.outcome, Outcome::StartError { ref message } if message.contains("executable file not found in $PATH"))
        );
    }

    #[test]
    fn annotations_override_per_pod_and_per_container() {
        let ann = json!({"simcluster.io/exit-code": "139", "simcluster.io/exit-after": "2.5", "simcluster.io/memory-usage.c": "300Mi"});
        let p = run("nginx:1.27", json!({}), &[], ann);
        assert_eq!(p.outcome, exits(2500, 139));
        assert_eq!(p.memory_bytes, 300.0 * 1024.0 * 1024.0);
        let other = json!({"simcluster.io/exit-code.other": "1"});
        assert_eq!(
            run("nginx:1.27", json!({}), &[], other).outcome,
            Outcome::RunsForever
        );
    }
}
