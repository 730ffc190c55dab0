//! The same cluster through kubectl, when kubectl is on PATH (skipped with a message otherwise): the commands an
//! SRE types against a real cluster work against simcluster and print what they print there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sim {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("k.cfg")
    }

    /// GET `path` with a bearer token, as an in-cluster client sends it (kubectl sends credentials only over TLS,
    /// and simcluster serves plain HTTP on loopback): the status code and the body.
    fn get_with_token(&self, path: &str, token: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let config = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let server = config
            .split("server: http://")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap();
        let mut conn = std::net::TcpStream::connect(server).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, body.to_string())
    }

    /// Run kubectl; (success, stdout + stderr).
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {text}");
        text
    }

    /// Retry a kubectl command until its output satisfies `check`.
    fn until(&self, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (_, text) = self.kubectl(args);
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never showed {what}; last: {text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn start() -> Option<Sim> {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "SKIPPED: kubectl is not on PATH; the kube-rs conformance tests cover the same behaviour"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_simcluster"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--time-scale",
            "20",
            "--kubeconfig-out",
        ])
        .arg(dir.path().join("k.cfg"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("k.cfg").exists() {
        assert!(
            Instant::now() < deadline,
            "simcluster did not write its kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Sim { child, dir })
}

fn scenario(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../k8s/scenarios")
        .join(file)
        .display()
        .to_string()
}

#[test]
fn the_seed_scenarios_through_kubectl() {
    let Some(sim) = start() else { return };
    assert_eq!(
        sim.ok(&["run", "test-nginx", "--image=nginx:bu-tag-yok"])
            .trim(),
        "pod/test-nginx created"
    );
    sim.ok(&[
        "run",
        "crash-app",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo 'Başladım'; sleep 5; exit 1",
    ]);
    sim.ok(&["apply", "-f", &scenario("oom-pod.yaml")]);
    let pods = sim.until(&["get", "pods"], "the three failures", |t| {
        t.contains("ImagePullBackOff")
            && t.lines().filter(|l| l.contains("CrashLoopBackOff")).count() == 2
    });
    assert!(pods.starts_with("NAME"), "{pods}");
    let describe = sim.ok(&["describe", "pod", "test-nginx"]);
    assert!(
        describe.contains("Failed to pull image \"nginx:bu-tag-yok\""),
        "{describe}"
    );
    assert!(
        describe.contains("Back-off pulling image \"nginx:bu-tag-yok\""),
        "{describe}"
    );
    let previous = sim.until(
        &["logs", "crash-app", "--previous"],
        "the previous instance's logs",
        |t| t == "Başladım\n",
    );
    assert_eq!(previous, "Başladım\n");
    let oom = sim.ok(&["get", "pod", "memory-app", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}"]);
    assert_eq!(oom, "OOMKilled/137");
    // A pod's resources cannot be changed in place, exactly as on a real API server.
    let (ok, text) = sim.kubectl(&[
        "set",
        "resources",
        "pod",
        "memory-app",
        "--limits=memory=256Mi",
    ]);
    assert!(!ok && text.contains("Pod \"memory-app\" is invalid: spec: Forbidden: pod updates may not change fields other than"), "{text}");
}

#[test]
fn rollouts_through_kubectl() {
    let Some(sim) = start() else { return };
    sim.ok(&["apply", "-f", &scenario("bad-image-deployment.yaml")]);
    sim.until(&["get", "pods", "-l", "app=web"], "ImagePullBackOff", |t| {
        t.contains("ImagePullBackOff")
    });
    assert_eq!(
        sim.ok(&["set", "image", "deployment/web", "web=nginx:1.27"])
            .trim(),
        "deployment.apps/web image updated"
    );
    let status = sim.ok(&["rollout", "status", "deployment/web", "--timeout=40s"]);
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    sim.ok(&["scale", "deployment/web", "--replicas=3"]);
    sim.until(&["get", "deployment", "web"], "3/3 ready", |t| {
        t.contains("3/3")
    });
    sim.ok(&["set", "image", "deployment/web", "web=nginx:1.26"]);
    sim.ok(&["rollout", "status", "deployment/web", "--timeout=40s"]);
    assert!(
        sim.ok(&["rollout", "undo", "deployment/web"])
            .contains("rolled back")
    );
    sim.ok(&["rollout", "status", "deployment/web", "--timeout=40s"]);
    let image = sim.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.27");
    let history = sim.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "3", "4"], "{history}");
    // apply of a changed manifest patches the live object.
    let changed = std::fs::read_to_string(scenario("bad-image-deployment.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 1")
        .replace("nginx:bu-tag-yok", "nginx:1.27");
    let file = sim.dir.path().join("web.yaml");
    std::fs::write(&file, changed).unwrap();
    assert!(
        sim.ok(&["apply", "-f", file.to_str().unwrap()])
            .contains("deployment.apps/web configured")
    );
    sim.until(&["get", "deployment", "web"], "1/1 ready", |t| {
        t.contains("1/1")
    });
}

#[test]
fn deleting_a_pod_is_graceful_and_force_deletion_is_immediate() {
    let Some(sim) = start() else { return };
    // PID 1 `sleep` ignores SIGTERM: the pod stays Terminating for its whole grace period (120 s, 6 s at
    // --time-scale 20), then the kubelet kills it and deletes it.
    sim.ok(&[
        "run",
        "sleeper",
        "--image=busybox:1.36",
        "--overrides={\"spec\":{\"terminationGracePeriodSeconds\":120}}",
        "--",
        "sleep",
        "100000",
    ]);
    sim.ok(&["run", "web", "--image=nginx:1.27"]);
    sim.ok(&[
        "run",
        "quick",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "100000",
    ]);
    for pod in ["sleeper", "web", "quick"] {
        sim.until(&["get", "pod", pod], "Running", |t| t.contains("Running"));
    }
    let deleted = sim.ok(&["delete", "pod", "sleeper", "--wait=false"]);
    assert_eq!(deleted.trim(), "pod \"sleeper\" deleted");
    let shown = sim.ok(&["get", "pod", "sleeper"]);
    assert!(shown.contains("Terminating"), "{shown}");
    let grace = sim.ok(&[
        "get",
        "pod",
        "sleeper",
        "-o",
        "jsonpath={.metadata.deletionGracePeriodSeconds} {.metadata.deletionTimestamp}",
    ]);
    assert!(grace.starts_with("120 20"), "{grace}");
    std::thread::sleep(Duration::from_secs(1));
    let still = sim.ok(&["get", "pod", "sleeper"]);
    assert!(
        still.contains("Terminating"),
        "a process that ignores SIGTERM has the whole grace period: {still}"
    );
    let events = sim.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=sleeper,reason=Killing",
    ]);
    assert!(events.contains("Stopping container sleeper"), "{events}");
    sim.until(&["get", "pods"], "sleeper gone", |t| !t.contains("sleeper"));
    // nginx stops on SIGTERM: gone long before its 30 s grace period (1.5 s here) is over.
    sim.ok(&["delete", "pod", "web"]);
    assert!(!sim.ok(&["get", "pods"]).contains("web"));
    // `--grace-period=0 --force` removes the object at once, whatever runs.
    let forced = sim.ok(&["delete", "pod", "quick", "--grace-period=0", "--force"]);
    assert!(forced.contains("pod \"quick\" force deleted"), "{forced}");
    let (found, text) = sim.kubectl(&["get", "pod", "quick"]);
    assert!(!found && text.contains("NotFound"), "{text}");
}

#[test]
fn kubectls_typed_create_commands_send_protobuf_and_work() {
    let Some(sim) = start() else { return };
    let created = [
        (vec!["create", "namespace", "x"], "namespace/x created"),
        (
            vec![
                "create",
                "deployment",
                "web",
                "--image=nginx:1.25",
                "-n",
                "x",
            ],
            "deployment.apps/web created",
        ),
        (
            vec![
                "create",
                "configmap",
                "cfg",
                "--from-literal=url=postgres://db",
                "-n",
                "x",
            ],
            "configmap/cfg created",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=password=s3cr3t",
                "-n",
                "x",
            ],
            "secret/creds created",
        ),
        (
            vec![
                "create",
                "service",
                "clusterip",
                "web",
                "--tcp=80:8080",
                "-n",
                "x",
            ],
            "service/web created",
        ),
        (
            vec!["create", "serviceaccount", "api", "-n", "x"],
            "serviceaccount/api created",
        ),
        (
            vec![
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods",
                "-n",
                "x",
            ],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "rolebinding",
                "reader",
                "--role=reader",
                "--serviceaccount=x:api",
                "-n",
                "x",
            ],
            "rolebinding.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "job",
                "once",
                "--image=busybox:1.36",
                "-n",
                "x",
                "--",
                "sh",
                "-c",
                "echo done",
            ],
            "job.batch/once created",
        ),
    ];
    for (args, want) in created {
        assert_eq!(sim.ok(&args).trim(), want, "kubectl {args:?}");
    }
    sim.until(&["get", "deployment", "web", "-n", "x"], "1/1 ready", |t| {
        t.contains("1/1")
    });
    let get = |args: &[&str]| sim.ok(args);
    assert_eq!(
        get(&[
            "get",
            "deployment",
            "web",
            "-n",
            "x",
            "-o",
            "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.template.spec.containers[0].image}"
        ]),
        "25% nginx:1.25"
    );
    assert_eq!(
        get(&[
            "get",
            "configmap",
            "cfg",
            "-n",
            "x",
            "-o",
            "jsonpath={.data.url}"
        ]),
        "postgres://db"
    );
    assert_eq!(
        get(&[
            "get",
            "secret",
            "creds",
            "-n",
            "x",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "czNjcjN0",
        "base64 of s3cr3t"
    );
    assert_eq!(
        get(&[
            "get",
            "service",
            "web",
            "-n",
            "x",
            "-o",
            "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}"
        ]),
        "80/8080"
    );
    assert_eq!(
        get(&[
            "get",
            "rolebinding",
            "reader",
            "-n",
            "x",
            "-o",
            "jsonpath={.roleRef.name} {.subjects[0].kind}:{.subjects[0].name}"
        ]),
        "reader ServiceAccount:api"
    );
    sim.until(
        &[
            "get",
            "job",
            "once",
            "-n",
            "x",
            "-o",
            "jsonpath={.status.succeeded}",
        ],
        "the job to succeed",
        |t| t == "1",
    );
    assert_eq!(sim.ok(&["logs", "job/once", "-n", "x"]), "done\n");
}

#[test]
fn server_side_apply_creates_merges_and_reports_conflicts_with_other_managers() {
    let Some(sim) = start() else { return };
    let web = scenario("bad-image-deployment.yaml");
    assert_eq!(
        sim.ok(&["apply", "--server-side", "-f", &web]).trim(),
        "deployment.apps/web serverside-applied"
    );
    sim.ok(&["set", "image", "deployment/web", "web=nginx:1.27"]);
    // The image is now another manager's: applying the old one is a conflict that names the field and the manager.
    let (ok, text) = sim.kubectl(&["apply", "--server-side", "-f", &web]);
    assert!(
        !ok && text.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-set\": .spec.template.spec.containers[name=\"web\"].image"
        ),
        "{text}"
    );
    sim.ok(&["apply", "--server-side", "--force-conflicts", "-f", &web]);
    assert_eq!(
        sim.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:bu-tag-yok"
    );
    let managers = sim.ok(&[
        "get",
        "deployment",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "kubectl", "the forced apply took the field over");
    // Every manifest in k8s/ applies server-side (the base kustomization first: it holds the namespace the rest use).
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/deploy/base");
    let out = sim.ok(&["apply", "--server-side", "-k", deploy.to_str().unwrap()]);
    assert!(
        out.contains("namespace/kube-reflexion serverside-applied"),
        "{out}"
    );
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/scenarios");
    for file in std::fs::read_dir(scenarios).unwrap() {
        let file = file.unwrap().path();
        if file.ends_with("bad-image-deployment.yaml") {
            continue;
        }
        let out = sim.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
        assert!(
            out.contains("serverside-applied"),
            "{}: {out}",
            file.display()
        );
    }
}

#[test]
fn a_broken_rollout_of_a_one_replica_deployment_keeps_the_old_pod_running() {
    let Some(sim) = start() else { return };
    sim.ok(&[
        "create",
        "deployment",
        "w",
        "--image=busybox:1.36",
        "--",
        "sh",
        "-c",
        "sleep 100000",
    ]);
    sim.until(&["get", "deployment", "w"], "1/1 ready", |t| {
        t.contains("1/1")
    });
    let old = sim.ok(&[
        "get",
        "pods",
        "-l",
        "app=w",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    sim.ok(&[
        "patch",
        "deployment",
        "w",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sh","-c","exit 1"]}]"#,
    ]);
    // maxSurge 25% of 1 is one new pod; maxUnavailable 25% of 1 is none: the old pod stays while the new one fails.
    sim.until(
        &["get", "pods", "-l", "app=w"],
        "the new pod crashing",
        |t| {
            t.lines()
                .any(|l| l.contains("CrashLoopBackOff") || l.contains("Error"))
        },
    );
    let shown = sim.ok(&["get", "pod", &old]);
    assert!(
        shown.contains("Running") && shown.contains("1/1"),
        "{shown}"
    );
}

/// Found by running outside repair tasks against simcluster, each as a real cluster behaves: a Namespace and a Pod
/// in it applied from one file (the ServiceAccount admission waits for the namespace's `default` account); a shell
/// that traps SIGTERM with an empty action ignores it (the pod stays Terminating for its grace period); a command
/// the image lacks crash-loops and is never Ready, so `kubectl wait --for=condition=Ready` times out.
#[test]
fn namespace_and_pod_in_one_file_trapped_sigterm_and_a_container_that_exits_at_once() {
    let Some(sim) = start() else { return };
    let file = sim.dir.path().join("both.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\n\
         metadata: {name: web, namespace: shop}\nspec:\n  containers: [{name: web, image: 'nginx:1.27'}]\n",
    )
    .unwrap();
    let applied = sim.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.contains("pod/web created"), "{applied}");
    sim.until(&["get", "pod", "web", "-n", "shop"], "Running", |t| {
        t.contains("Running")
    });

    sim.ok(&[
        "run",
        "stubborn",
        "--image=busybox:1.36",
        "--overrides={\"spec\":{\"terminationGracePeriodSeconds\":120}}",
        "--",
        "sh",
        "-c",
        "trap \"\" TERM; while true; do sleep 1; done",
    ]);
    sim.until(&["get", "pod", "stubborn"], "Running", |t| {
        t.contains("Running")
    });
    sim.ok(&["delete", "pod", "stubborn", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    let still = sim.ok(&["get", "pod", "stubborn"]);
    assert!(
        still.contains("Terminating"),
        "`trap \"\" TERM` ignores SIGTERM: the whole grace period (6 s here) passes first: {still}"
    );

    sim.ok(&[
        "run",
        "broken",
        "--image=busybox:1.36",
        "--",
        "sh",
        "-c",
        "nonexistent_command",
    ]);
    let (ready, text) = sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/broken",
        "--timeout=4s",
    ]);
    assert!(
        !ready,
        "a container that exits at once is never Ready: {text}"
    );
    let restarts = sim.until(
        &[
            "get",
            "pod",
            "broken",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        "a restart",
        |t| t.trim().parse::<u32>().is_ok_and(|n| n >= 1),
    );
    assert!(!restarts.is_empty());
}

/// A Deployment whose pods a ResourceQuota does not admit, as a real cluster shows it: one pod fits, the next is
/// refused with the quota's numbers — a `FailedCreate` Event and the `ReplicaFailure` condition on its ReplicaSet and
/// on the Deployment — and the quota's status counts what the namespace's pods use.
#[test]
fn a_quota_refuses_pods_past_it_and_the_deployment_says_so() {
    let Some(sim) = start() else { return };
    let file = sim.dir.path().join("quota.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute, namespace: shop}\n\
         spec: {hard: {requests.memory: 512Mi}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n\
         \x20   spec: {containers: [{name: web, image: 'nginx:1.27', resources: {requests: {memory: 300Mi}}}]}\n",
    )
    .unwrap();
    sim.ok(&["apply", "-f", file.to_str().unwrap()]);
    let want = "exceeded quota: compute, requested: requests.memory=300Mi, used: requests.memory=300Mi, limited: requests.memory=512Mi";
    let events = sim.until(
        &[
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "reason=FailedCreate",
        ],
        "a FailedCreate event",
        |t| t.contains(want),
    );
    assert!(events.contains("Error creating: pods \"web-"), "{events}");
    for kind in ["replicaset", "deployment"] {
        sim.until(
            &[
                "get",
                kind,
                "-n",
                "shop",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"ReplicaFailure\")].message}",
            ],
            "the ReplicaFailure condition",
            |t| t.contains(want),
        );
    }
    let used = sim.until(
        &[
            "get",
            "quota",
            "compute",
            "-n",
            "shop",
            "-o",
            "jsonpath={.status.used.requests\\.memory}",
        ],
        "the quota's usage",
        |t| t.trim() == "300Mi",
    );
    assert_eq!(used.trim(), "300Mi");
    let pods = sim.ok(&["get", "pods", "-n", "shop", "-o", "name"]);
    assert_eq!(pods.lines().count(), 1, "{pods}");
}

/// Pod Security admission: a namespace that enforces `restricted` refuses a pod running as root, naming every field
/// (and a Deployment's ReplicaSet says so in its FailedCreate Event); the product's own manifests pass it.
#[test]
fn a_restricted_namespace_refuses_a_root_pod_naming_the_fields() {
    let Some(sim) = start() else { return };
    sim.ok(&["create", "namespace", "locked"]);
    sim.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let (ok, text) = sim.kubectl(&["run", "web", "-n", "locked", "--image=nginx:1.27"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("pods \"web\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"web\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{text}"
    );
    assert!(text.contains("runAsNonRoot != true (pod or container \"web\" must set securityContext.runAsNonRoot=true)"), "{text}");
    sim.ok(&[
        "create",
        "deployment",
        "api",
        "-n",
        "locked",
        "--image=nginx:1.27",
    ]);
    sim.until(
        &[
            "get",
            "events",
            "-n",
            "locked",
            "--field-selector",
            "reason=FailedCreate",
        ],
        "a FailedCreate event naming PodSecurity",
        |t| t.contains("violates PodSecurity"),
    );
    // kube-reflexion's own namespace enforces restricted, and its pods are admitted.
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/deploy/base");
    sim.ok(&["apply", "-k", deploy.to_str().unwrap()]);
    for app in ["reflexion-api", "reflexion-watcher"] {
        sim.until(
            &[
                "get",
                "pods",
                "-n",
                "kube-reflexion",
                "-l",
                &format!("app.kubernetes.io/name={app}"),
                "-o",
                "name",
            ],
            "a pod admitted",
            |t| t.contains("pod/"),
        );
    }
}

/// CronJobs run on their schedule (a simulated minute is 3 s at --time-scale 20) and keep their status; a schedule
/// that does not parse is refused; a Job past its activeDeadlineSeconds fails with DeadlineExceeded.
#[test]
fn cronjobs_run_on_schedule_and_jobs_stop_at_their_deadline() {
    let Some(sim) = start() else { return };
    let (ok, text) = sim.kubectl(&[
        "create",
        "cronjob",
        "bad",
        "--image=busybox:1.36",
        "--schedule=61 * * * *",
        "--",
        "true",
    ]);
    assert!(!ok && text.contains("spec.schedule"), "{text}");
    sim.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1.36",
        "--schedule=*/1 * * * *",
        "--",
        "sh",
        "-c",
        "echo tick",
    ]);
    let jobs = sim.until(
        &["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"],
        "a job of the cronjob",
        |t| t.contains("tick-"),
    );
    let first = jobs
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let minute: i64 = first.trim_start_matches("tick-").parse().unwrap();
    assert!(
        minute > 29_000_000,
        "named after the scheduled minute since the epoch: {first}"
    );
    sim.until(
        &[
            "get",
            "job",
            &first,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Complete\")].status}",
        ],
        "the job to complete",
        |t| t.trim() == "True",
    );
    sim.until(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}",
        ],
        "the cronjob's status",
        |t| t.split_whitespace().count() == 2,
    );
    sim.ok(&[
        "create",
        "job",
        "slow",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "100000",
    ]);
    sim.ok(&[
        "patch",
        "job",
        "slow",
        "--type=merge",
        "-p",
        "{\"spec\":{\"activeDeadlineSeconds\":20}}",
    ]);
    let reason = sim.until(
        &[
            "get",
            "job",
            "slow",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ],
        "the job to fail at its deadline",
        |t| t.trim() == "DeadlineExceeded",
    );
    assert_eq!(reason.trim(), "DeadlineExceeded");
}

/// Access reviews decided by RBAC over the stored Roles and bindings: `kubectl auth can-i --as` a ServiceAccount
/// answers yes for exactly what a RoleBinding grants it in its namespace, and no elsewhere or across namespaces.
#[test]
fn kubectl_auth_can_i_answers_as_rbac_decides() {
    let Some(sim) = start() else { return };
    sim.ok(&["create", "namespace", "shop"]);
    sim.ok(&["create", "serviceaccount", "app", "-n", "shop"]);
    sim.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "shop",
        "--verb=get,list",
        "--resource=pods",
    ]);
    sim.ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "-n",
        "shop",
        "--role=pod-reader",
        "--serviceaccount=shop:app",
    ]);
    let as_app = "--as=system:serviceaccount:shop:app";
    let can = |args: &[&str]| {
        let mut argv = vec!["auth", "can-i"];
        argv.extend_from_slice(args);
        let (_, text) = sim.kubectl(&argv);
        text.trim().to_string()
    };
    assert_eq!(can(&["list", "pods", "-n", "shop", as_app]), "yes");
    assert_eq!(can(&["delete", "pods", "-n", "shop", as_app]), "no");
    assert_eq!(can(&["list", "pods", "-n", "default", as_app]), "no");
    assert_eq!(can(&["list", "pods", "-A", as_app]), "no");
    assert_eq!(can(&["list", "secrets", "-n", "shop", as_app]), "no");
    assert_eq!(
        can(&["delete", "pods", "-n", "shop"]),
        "yes",
        "the kubeconfig's user is the admin"
    );
    let review = sim.dir.path().join("sar.yaml");
    std::fs::write(
        &review,
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: system:serviceaccount:shop:app\n\
         \x20 resourceAttributes: {namespace: shop, verb: list, resource: pods}\n",
    )
    .unwrap();
    let out = sim.ok(&[
        "create",
        "-f",
        review.to_str().unwrap(),
        "-o",
        "jsonpath={.status.allowed} {.status.reason}",
    ]);
    assert_eq!(
        out,
        "true RBAC: allowed by RoleBinding \"read-pods/shop\" of Role \"pod-reader\" to system:serviceaccount:shop:app"
    );
}

/// A ServiceAccount's token is authorized by RBAC on every request: `kubectl create token` and `--token` (or
/// `--as`) get the API server's real 403 for what no Role grants; a pod whose program lists pods with its mounted
/// token crash-loops with that message in its log, and runs once one Role rule allows exactly that.
#[test]
fn a_service_accounts_token_gets_what_rbac_grants_and_a_real_403_otherwise() {
    let Some(sim) = start() else { return };
    sim.ok(&["create", "serviceaccount", "lister"]);
    sim.ok(&["create", "role", "lister", "--verb=get", "--resource=pods"]);
    sim.ok(&[
        "create",
        "rolebinding",
        "lister",
        "--role=lister",
        "--serviceaccount=default:lister",
    ]);
    let denial = r#"pods is forbidden: User "system:serviceaccount:default:lister" cannot list resource "pods" in API group "" in the namespace "default""#;
    let token = sim.ok(&["create", "token", "lister"]);
    let token = token.trim();
    let pods = "/api/v1/namespaces/default/pods";
    let (code, body) = sim.get_with_token(pods, token);
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["reason"].as_str(), status["message"].as_str()),
        (Some("Forbidden"), Some(denial))
    );
    assert_eq!(
        sim.get_with_token("/api/v1/namespaces/default/pods/nothing", token)
            .0,
        404,
        "get is granted"
    );
    assert_eq!(sim.get_with_token(pods, "forged.token.value").0, 401);
    let (ok, text) = sim.kubectl(&["get", "pods", "--as=system:serviceaccount:default:lister"]);
    assert!(!ok);
    assert!(text.contains(denial), "{text}");
    sim.ok(&[
        "run",
        "reporter",
        "--image=kubereflexion/pod-reporter:1.0.0",
        "--overrides",
        r#"{"spec": {"serviceAccountName": "lister"}}"#,
    ]);
    sim.until(&["logs", "reporter"], "the denial in the pod's log", |t| {
        t.contains(denial)
    });
    sim.ok(&[
        "patch",
        "role/lister",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["list"]}}]"#,
    ]);
    let (code, body) = sim.get_with_token(pods, token);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"name\":\"reporter\""), "{body}");
    let (code, body) = sim.get_with_token("/api/v1/pods", token);
    assert_eq!(code, 403, "a Role grants nothing across namespaces: {body}");
    assert!(body.contains("at the cluster scope"), "{body}");
    let (ok, text) = sim.kubectl(&[
        "auth",
        "can-i",
        "list",
        "pods",
        "-A",
        "--as=system:serviceaccount:default:lister",
    ]);
    assert_eq!((ok, text.trim()), (false, "no"));
    sim.until(
        &[
            "get",
            "pod",
            "reporter",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ],
        "the pod to run once it may list pods",
        |t| t == "true",
    );
}

/// A busybox pod running `wget -qO- URL`: its phase once it ended.
fn wget_pod(sim: &Sim, name: &str, url: &str) -> String {
    sim.ok(&[
        "run",
        name,
        "--image=busybox:1.36",
        "--restart=Never",
        "--",
        "wget",
        "-qO-",
        url,
    ]);
    sim.until(
        &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
        "the pod's end",
        |t| t == "Succeeded" || t == "Failed",
    )
}

/// An nginx Deployment (`app: nginx`, declaring `port`) rolled out behind Service `nginx` with `spec`.
fn nginx_behind_a_service(sim: &Sim, port: &str, spec: &str) {
    let file = sim.dir.path().join("svc.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: nginx}}\n\
             spec:\n  selector: {{matchLabels: {{app: nginx}}}}\n  template:\n    metadata: {{labels: {{app: nginx}}}}\n\
             \x20   spec: {{containers: [{{name: nginx, image: 'nginx:1.27', ports: [{port}]}}]}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: nginx}}\nspec: {spec}\n"
        ),
    )
    .unwrap();
    sim.ok(&["apply", "-f", file.to_str().unwrap()]);
    sim.ok(&["rollout", "status", "deployment/nginx", "--timeout=40s"]);
}

/// Wait until a field of a Service's first EndpointSlice reads `want`.
fn until_slice(sim: &Sim, service: &str, path: &str, what: &str, want: &str) {
    sim.until(
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
            "-o",
            &format!("jsonpath={path}"),
        ],
        what,
        |t| t == want,
    );
}

/// busybox's `wget` reaches a Service by name through its ready endpoints: refused while the selector matches no
/// pod (the issue's `app: web` Service in front of `app: nginx` pods), answered once it does.
#[test]
fn wget_reaches_a_service_by_name_only_through_pods_it_selects() {
    let Some(sim) = start() else { return };
    nginx_behind_a_service(
        &sim,
        "{containerPort: 80}",
        "{selector: {app: web}, ports: [{port: 80}]}",
    );
    let probe = |name: &str, url: &str| wget_pod(&sim, name, url);
    assert_eq!(probe("before", "nginx"), "Failed");
    let logs = sim.ok(&["logs", "before"]);
    assert!(
        logs.contains("wget: can't connect to remote host (10.")
            && logs.contains("Connection refused"),
        "{logs}"
    );
    assert_eq!(probe("unknown", "nowhere"), "Failed");
    assert!(
        sim.ok(&["logs", "unknown"])
            .contains("wget: bad address 'nowhere'")
    );
    sim.ok(&[
        "patch",
        "service",
        "nginx",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"app":"nginx"}}}"#,
    ]);
    until_slice(
        &sim,
        "nginx",
        "{.items[0].endpoints[0].conditions.ready}",
        "a ready endpoint",
        "true",
    );
    assert_eq!(
        probe("after", "nginx.default.svc.cluster.local"),
        "Succeeded"
    );
    assert_eq!(probe("wrong-port", "http://nginx:8080/"), "Failed");
}

/// A named targetPort the pods do not declare: the EndpointSlice lists the pod but no port for it (the real
/// controller skips a port `FindPort` cannot resolve), so the Service refuses connections; pointing the port at the
/// name the pods declare (a strategic merge patch keyed by `port`, as `kubectl patch` sends it) routes it.
#[test]
fn a_named_target_port_no_pod_declares_routes_nothing() {
    let Some(sim) = start() else { return };
    nginx_behind_a_service(
        &sim,
        "{name: http, containerPort: 80}",
        "{selector: {app: nginx}, ports: [{name: web, port: 80, targetPort: web}]}",
    );
    let slice = |path: &str| {
        sim.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=nginx",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    until_slice(
        &sim,
        "nginx",
        "{.items[0].endpoints[0].conditions.ready}",
        "a ready endpoint",
        "true",
    );
    assert_eq!(slice("{.items[0].ports}"), "null", "no port resolved");
    let endpoints = sim.ok(&["get", "endpoints", "nginx", "-o", "jsonpath={.subsets}"]);
    assert_eq!(endpoints, "", "no address without a port");
    let probe = |name: &str| wget_pod(&sim, name, "nginx");
    assert_eq!(probe("before"), "Failed");
    assert!(sim.ok(&["logs", "before"]).contains("Connection refused"));
    sim.ok(&[
        "patch",
        "service/nginx",
        "-p",
        r#"{"spec":{"ports":[{"port":80,"targetPort":"http"}]}}"#,
    ]);
    assert_eq!(
        sim.ok(&[
            "get",
            "service",
            "nginx",
            "-o",
            "jsonpath={.spec.ports[0].name}"
        ]),
        "web",
        "the patch merged into the port (keyed by port), not replaced it"
    );
    until_slice(
        &sim,
        "nginx",
        "{.items[0].ports[0].port}",
        "the port resolved",
        "80",
    );
    assert_eq!(probe("after"), "Succeeded");
}

/// A readiness gate: the containers are ready, the pod is not until someone sets the gate's condition (in the
/// kubelet's words meanwhile), and the kubelet keeps that condition when it writes the status again.
#[test]
fn a_pod_with_a_readiness_gate_is_ready_only_once_its_condition_is_true() {
    let Some(sim) = start() else { return };
    let file = sim.dir.path().join("gated.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: gated}\n\
         spec:\n  readinessGates: [{conditionType: example.com/lb-ready}]\n\
         \x20 containers: [{name: web, image: 'nginx:1.27'}]\n",
    )
    .unwrap();
    sim.ok(&["apply", "-f", file.to_str().unwrap()]);
    let condition = |t: &str, field: &str| {
        sim.ok(&[
            "get",
            "pod",
            "gated",
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].{field}}}"),
        ])
    };
    sim.until(
        &[
            "get",
            "pod",
            "gated",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ContainersReady\")].status}",
        ],
        "the containers to be ready",
        |t| t == "True",
    );
    assert_eq!(condition("Ready", "status"), "False");
    assert_eq!(condition("Ready", "reason"), "ReadinessGatesNotReady");
    assert_eq!(
        condition("Ready", "message"),
        "corresponding condition of pod readiness gate \"example.com/lb-ready\" does not exist."
    );
    sim.ok(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/status/conditions/-","value":{"type":"example.com/lb-ready","status":"True"}}]"#,
    ]);
    sim.until(
        &[
            "get",
            "pod",
            "gated",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "the pod to be ready",
        |t| t == "True",
    );
    assert_eq!(condition("example.com/lb-ready", "status"), "True");
}
