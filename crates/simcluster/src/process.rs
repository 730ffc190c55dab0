//! What a container's main process does, from its image's behaviour, the pod's `command`/`args`, its environment
//! and the test author's annotations: the lines it logs, whether and when it exits and with which code, how much
//! memory it uses, and which ports and paths it serves.

use crate::catalog::{Behaviour, Serves};
use crate::quantity;
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

const DEFAULT_MEMORY: f64 = 4.0 * 1024.0 * 1024.0;
/// A process that "exits immediately" still takes a moment.
const IMMEDIATE: Duration = Duration::from_millis(300);

const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "ash",
    "/bin/sh",
    "/bin/bash",
    "/bin/ash",
    "/usr/bin/env",
];
/// Commands a minimal image's shell has; anything else is "not found" (exit 127).
const BUILTINS: &[&str] = &[
    "echo", "sleep", "exit", "true", "false", "printenv", "env", "cat", "ls", "date", "hostname",
    "trap", "wait", "tail", "touch", "mkdir", "export", ":", "set", "test", "[", "printf", "nc",
    "wget", "seq", "yes",
];

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

/// Resolve the program of a container. `env` holds the container's resolved environment.
pub fn program(
    container: &Value,
    behaviour: &Behaviour,
    env: &BTreeMap<String, String>,
    annotations: &Value,
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
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (false, _) => command.into_iter().chain(args).collect(),
        (true, false) => behaviour.entrypoint.iter().cloned().chain(args).collect(),
        (true, true) => behaviour
            .entrypoint
            .iter()
            .chain(behaviour.cmd.iter())
            .cloned()
            .collect(),
    };
    let default_memory = behaviour
        .memory
        .as_deref()
        .and_then(quantity::parse)
        .unwrap_or(DEFAULT_MEMORY);
    let mut p = Program {
        logs: Vec::new(),
        outcome: Outcome::RunsForever,
        memory_bytes: default_memory,
        serves: Vec::new(),
        on_sigterm: Sigterm::Ignored,
    };
    let image_default = argv
        .first()
        .is_some_and(|a| behaviour.entrypoint.first().or(behaviour.cmd.first()) == Some(a));
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if let Some(missing) = behaviour
        .requires_env
        .iter()
        .find(|v| env.get(*v).is_none_or(|x| x.is_empty()))
    {
        let line = behaviour
            .missing_env
            .as_deref()
            .unwrap_or("error: required environment variable {name} is not set")
            .replace("{name}", missing);
        p.logs.extend(line.lines().map(String::from));
        p.outcome = Outcome::Exits {
            after: IMMEDIATE,
            code: 1,
        };
    } else if argv.is_empty() {
        p.outcome = Outcome::StartError {
            message: "no command specified".into(),
        };
    } else if SHELLS.contains(&argv[0].as_str()) {
        match argv
            .iter()
            .position(|a| a == "-c")
            .and_then(|i| argv.get(i + 1))
        {
            Some(script) => {
                run_script(script, env, &mut p);
                // A shell as PID 1 stops on SIGTERM only if the script traps it.
                if script.contains("trap ") && script.contains("TERM") {
                    p.on_sigterm = Sigterm::Exits(0);
                }
            }
            // A shell with no script and no terminal reads EOF and exits 0.
            None => {
                p.outcome = Outcome::Exits {
                    after: IMMEDIATE,
                    code: 0,
                }
            }
        }
    } else if prog == "sleep" {
        p.outcome = sleep_outcome(argv.get(1).map(String::as_str).unwrap_or("0"));
    } else if prog == "stress" {
        stress(&argv[1..], &mut p);
    } else if image_default {
        p.logs.extend(behaviour.logs.iter().cloned());
        p.serves = behaviour.serves.clone();
        if !behaviour.ignores_sigterm {
            p.on_sigterm = Sigterm::Exits(0);
        }
        if ["python3", "python", "node"].contains(&prog.as_str()) {
            // An interpreter with no script and no terminal exits at once.
            p.outcome = Outcome::Exits {
                after: IMMEDIATE,
                code: 0,
            };
        }
    } else if argv[0].starts_with('/') || argv[0].starts_with("./") {
        p.outcome = Outcome::StartError {
            message: format!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: \"{}\": stat {}: no such file or directory: unknown",
                argv[0], argv[0]
            ),
        };
    } else {
        p.outcome = Outcome::StartError {
            message: format!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: \"{}\": executable file not found in $PATH: unknown",
                argv[0]
            ),
        };
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

fn sleep_outcome(arg: &str) -> Outcome {
    if arg == "infinity" {
        return Outcome::RunsForever;
    }
    match arg.trim_end_matches('s').parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Outcome::Exits {
            after: Duration::from_secs_f64(s.min(1e7)),
            code: 0,
        },
        _ => Outcome::Exits {
            after: IMMEDIATE,
            code: 1,
        },
    }
}

/// `stress --vm 1 --vm-bytes 500M [--timeout 10s]`: allocates and holds the memory.
fn stress(args: &[String], p: &mut Program) {
    let mut i = 0;
    let mut vm = 0.0;
    let mut bytes = 256.0 * 1024.0 * 1024.0;
    while i < args.len() {
        match args[i].as_str() {
            "--vm" | "-m" => vm = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(1.0),
            "--vm-bytes" => {
                bytes = args
                    .get(i + 1)
                    .and_then(|v| quantity::parse(v))
                    .unwrap_or(bytes)
            }
            "--timeout" | "-t" => {
                if let Some(Outcome::Exits { after, .. }) =
                    args.get(i + 1).map(|t| sleep_outcome(t))
                {
                    p.outcome = Outcome::Exits { after, code: 0 };
                }
            }
            "--help" => {
                p.logs
                    .push("`stress' imposes certain types of compute stress on your system".into());
                p.outcome = Outcome::Exits {
                    after: IMMEDIATE,
                    code: 1,
                };
                return;
            }
            _ => {}
        }
        i += 1;
    }
    p.logs.push(format!(
        "stress: info: [1] dispatching hogs: 0 cpu, 0 io, {vm} vm, 0 hdd"
    ));
    p.memory_bytes = p.memory_bytes.max(vm * bytes);
}

/// A tiny `sh -c` interpreter: statements separated by `;`, `&&`, `||` or newlines.
fn run_script(script: &str, env: &BTreeMap<String, String>, p: &mut Program) {
    let mut elapsed = Duration::ZERO;
    let forever = script.contains("while true") || script.contains("while :");
    for stmt in script
        .split(['\n', ';'])
        .flat_map(|s| s.split("&&"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let mut stmt = stmt;
        for keyword in ["do ", "then ", "else "] {
            stmt = stmt.strip_prefix(keyword).map(str::trim).unwrap_or(stmt);
        }
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let cmd = words[0];
        match cmd {
            "echo" | "printf" => p.logs.push(expand(&unquote(stmt[cmd.len()..].trim()), env)),
            "sleep" => match sleep_outcome(words.get(1).copied().unwrap_or("0")) {
                Outcome::Exits { after, .. } => elapsed += after,
                _ => {
                    p.outcome = Outcome::RunsForever;
                    return;
                }
            },
            "exit" => {
                let code = words.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                p.outcome = Outcome::Exits {
                    after: elapsed.max(IMMEDIATE),
                    code,
                };
                return;
            }
            "false" => {
                p.outcome = Outcome::Exits {
                    after: elapsed.max(IMMEDIATE),
                    code: 1,
                };
                return;
            }
            "tail" if words.contains(&"-f") => {
                p.outcome = Outcome::RunsForever;
                return;
            }
            "while" | "do" | "done" | "then" | "fi" | "if" => {}
            c if BUILTINS.contains(&c) => {}
            c => {
                p.logs.push(format!("sh: {c}: not found"));
                p.outcome = Outcome::Exits {
                    after: elapsed.max(IMMEDIATE),
                    code: 127,
                };
                return;
            }
        }
    }
    p.outcome = if forever {
        Outcome::RunsForever
    } else {
        Outcome::Exits {
            after: elapsed.max(IMMEDIATE),
            code: 0,
        }
    };
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// `$VAR` and `${VAR}` from the container's environment (unset = empty).
fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;
    use serde_json::json;

    fn run(image: &str, container: Value, env: &[(&str, &str)], ann: Value) -> Program {
        let catalog = Catalog::builtin();
        let mut c = container;
        c["name"] = json!("c");
        c["image"] = json!(image);
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        program(&c, &catalog.behaviour(image), &env, &ann)
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
            "busybox",
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
