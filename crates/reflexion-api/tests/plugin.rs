//! `kubectl reflexion` (issue 29), the real binary against the real stack: it lists the seed's bad-tag pod's
//! incident (through kubectl's plugin mechanism where kubectl is installed), shows it, follows the live feed, explains
//! a pod from the cluster, refuses to approve without a yes, approves a waiting nodeSelector fix with `--yes` — the
//! Deployment becomes Available — reads the memory, and says what went wrong in one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{FIX_TIMEOUT, Options, Stack, awaiting_approval, finished_incident};

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn plugin(stack: &Stack, args: &[&str], stdin: &str) -> Ran {
    let mut child = Command::new(support::bin("kubectl-reflexion"))
        .args(args)
        .env("REFLEXION_API_URL", &stack.api_url)
        .env("KUBECONFIG", &stack.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl-reflexion");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reflexion_lists_shows_explains_and_approves() {
    let stack = Stack::start(Options::default()).await;
    // The live feed, from before anything fails: each move printed as a row.
    let mut watch = Command::new(support::bin("kubectl-reflexion"))
        .args(["incidents", "--watch", "--api-url", &stack.api_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (rows_tx, rows) = std::sync::mpsc::channel::<String>();
    let watched = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(watched)
            .lines()
            .map_while(Result::ok)
        {
            let _ = rows_tx.send(line);
        }
    });

    // The seed's scenario 1: a bare pod with a tag that does not exist, fixed automatically.
    stack
        .create_all(include_str!("../../../k8s/scenarios/bad-image-pod.yaml"))
        .await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let id = done["id"].as_str().unwrap();

    let listed = plugin(&stack, &["incidents"], "");
    assert!(listed.ok, "{}", listed.stderr);
    let mut lines = listed.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "NAMESPACE",
            "WORKLOAD",
            "SIGNATURE",
            "STATE",
            "TRIALS",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [
            id,
            "default",
            "pod/test-nginx",
            "image_pull/not_found",
            "resolved",
            "1"
        ]
    );
    let wide = plugin(&stack, &["incidents", "-o", "wide"], "");
    assert!(
        wide.stdout.lines().next().unwrap().contains("FIXED-BY"),
        "{}",
        wide.stdout
    );
    assert!(wide.stdout.contains("rules"), "{}", wide.stdout);
    let json: Value =
        serde_json::from_str(&plugin(&stack, &["incidents", "-o", "json"], "").stdout).unwrap();
    assert_eq!(json["incidents"][0]["id"], id);
    let yaml = plugin(&stack, &["incidents", "-o", "yaml"], "").stdout;
    assert!(yaml.contains("signature: image_pull/not_found"), "{yaml}");
    // As kubectl runs it: a plugin is any `kubectl-*` executable on PATH.
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        let dir = support::bin("kubectl-reflexion")
            .parent()
            .unwrap()
            .to_path_buf();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("kubectl")
            .args(["reflexion", "incidents", "--api-url", &stack.api_url])
            .env("PATH", path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(id) && text.contains("pod/test-nginx"),
            "{text}"
        );
    } else {
        eprintln!(
            "kubectl is not installed: `kubectl reflexion` checked as `kubectl-reflexion` only"
        );
    }

    let shown = plugin(&stack, &["show", id], "");
    assert!(shown.ok, "{}", shown.stderr);
    for want in [
        "Cause:       image_pull/not_found (",
        "Timeline:",
        "Trials:",
        "#1 set_image (rules): verified",
        "kubectl set image pod/test-nginx",
        "Writes:",
    ] {
        assert!(shown.stdout.contains(want), "{want} in\n{}", shown.stdout);
    }

    // A fix that waits for a person: a nodeSelector no node has.
    stack
        .create_all(include_str!("../../../k8s/scenarios/selector-no-node.yaml"))
        .await;
    let waiting = awaiting_approval(&stack).await;
    let wid = waiting["id"].as_str().unwrap();
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");

    let pod = support::a_pod_of(&stack, "catalog").await;
    let explained = plugin(&stack, &["explain", &pod, "-n", "default"], "");
    assert!(explained.ok, "{}", explained.stderr);
    for want in [
        "(fixed at Deployment catalog)".to_string(),
        "failing: unschedulable/node_selector".to_string(),
        format!("Open:        incident {wid} awaiting_approval"),
    ] {
        assert!(
            explained.stdout.contains(&want),
            "{want} in\n{}",
            explained.stdout
        );
    }
    let bare = plugin(&stack, &["explain", "test-nginx", "-n", "default"], "");
    assert!(
        bare.stdout.contains("Last fixes:")
            && bare.stdout.contains("kubectl set image pod/test-nginx"),
        "{}",
        bare.stdout
    );
    assert!(
        bare.stdout.contains("Learned:")
            && bare.stdout.contains("image_pull/not_found   set_image"),
        "{}",
        bare.stdout
    );

    let declined = plugin(&stack, &["approve", wid], "n\n");
    assert!(!declined.ok);
    assert!(
        declined.stdout.contains(command),
        "the exact command first: {}",
        declined.stdout
    );
    assert_eq!(
        declined.stderr.trim(),
        "Approve? [y/N] error: not confirmed: nothing was done (answer y, or pass --yes)"
    );
    assert_eq!(
        deployments
            .get("catalog")
            .await
            .unwrap()
            .metadata
            .generation,
        Some(1)
    );

    let approved = plugin(&stack, &["approve", wid, "--yes"], "");
    assert!(approved.ok, "{}", approved.stderr);
    assert!(approved.stdout.contains(command), "{}", approved.stdout);
    assert!(
        approved
            .stdout
            .contains(&format!("incident {wid} approved")),
        "{}",
        approved.stdout
    );
    stack
        .eventually("the Deployment to be Available", FIX_TIMEOUT, async || {
            let d = deployments.get("catalog").await.unwrap();
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                });
            (available.then_some(()), format!("{:?}", d.status))
        })
        .await;
    let again = plugin(&stack, &["approve", wid, "--yes"], "");
    assert!(!again.ok);
    assert!(
        again
            .stderr
            .starts_with(&format!("error: incident {wid} is "))
            && again.stderr.contains("not awaiting approval"),
        "{}",
        again.stderr
    );

    // The feed printed the waiting incident as it moved.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rows.recv_timeout(Duration::from_secs(1)) {
            seen.push(line);
        }
        if seen
            .iter()
            .any(|l| l.contains(wid) && l.contains("awaiting_approval"))
            && seen
                .iter()
                .any(|l| l.contains(id) && l.contains("resolved"))
        {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains(wid) && l.contains("awaiting_approval")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains(id) && l.contains("resolved")),
        "{seen:#?}"
    );

    let stats: Value =
        serde_json::from_str(&plugin(&stack, &["memory", "stats", "-o", "json"], "").stdout)
            .unwrap();
    assert!(
        stats["incidents"]["total"].as_i64().unwrap() >= 2,
        "{stats}"
    );
    let strategies = plugin(&stack, &["memory", "strategies"], "").stdout;
    assert!(
        strategies.starts_with("SIGNATURE") && strategies.contains("set_image"),
        "{strategies}"
    );
    let lessons = plugin(&stack, &["memory", "lessons"], "").stdout;
    assert!(
        lessons.starts_with("AGE") && lessons.lines().count() > 1,
        "{lessons}"
    );
    let kept = plugin(&stack, &["memory", "clear"], "\n");
    assert!(
        !kept.ok && kept.stderr.contains("not confirmed"),
        "{}",
        kept.stderr
    );
    let after: Value =
        serde_json::from_str(&plugin(&stack, &["memory", "stats", "-o", "json"], "").stdout)
            .unwrap();
    assert_eq!(
        after["strategies"], stats["strategies"],
        "nothing forgotten without a yes"
    );

    // Errors: one line each.
    for (args, want) in [
        (
            vec!["show", "no-such-incident"],
            "error: reflexion-api answered 404",
        ),
        (
            vec!["incidents", "--api-url", "http://127.0.0.1:1"],
            "error: cannot reach reflexion-api at http://127.0.0.1:1/",
        ),
        (
            vec!["incidents", "--api-url", "ftp://x"],
            "error: --api-url \"ftp://x\" is not an http(s) URL",
        ),
        (
            vec!["explain", "nope", "-n", "default"],
            "error: reading pod default/nope",
        ),
    ] {
        let r = plugin(&stack, &args, "");
        assert!(!r.ok, "{args:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with(want), "{args:?}: {}", r.stderr);
    }
    let completion = plugin(&stack, &["completion", "bash"], "");
    assert!(
        completion.ok
            && completion.stdout.contains("kubectl-reflexion")
            && completion.stdout.contains("approve")
    );
}
