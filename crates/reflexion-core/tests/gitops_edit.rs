//! Each typed action as an edit of real-world manifest styles — kubectl's, indented and quoted, flow style, several
//! documents in a file, anchors, a StatefulSet, a CronJob, and kustomize overlays with patches and an `images`
//! entry: the edit changes exactly the lines of the fields the action changes (asserted line by line), everything
//! else stays byte for byte, and the edited object reads back as the action makes it (checked inside every edit;
//! for kustomize, also by `kubectl kustomize` where kubectl is installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reflexion_core::gitops::kustomize::{self, FileEdit, MemTree, Target};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::{Action, EnvSource, ProbeHandler, ProbeKind};
use std::collections::BTreeMap;
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/manifests");

fn tree() -> MemTree {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &rel, out);
            } else {
                out.insert(rel, std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(Path::new(FIXTURES), "", &mut files);
    MemTree(files)
}

/// A tree holding one fixture file alone, so that the path is that file's directory.
fn only(file: &str) -> MemTree {
    let t = tree();
    MemTree(BTreeMap::from([(file.to_string(), t.0[file].clone())]))
}

fn target(kind: WorkloadKind, name: &str) -> WorkloadRef {
    WorkloadRef::new(kind, "shop", name)
}

fn deploy(name: &str) -> WorkloadRef {
    target(WorkloadKind::Deployment, name)
}

/// The lines an edit removed and added: what lies between the longest common head and tail.
fn changed(e: &FileEdit) -> (Vec<String>, Vec<String>) {
    let (b, a): (Vec<&str>, Vec<&str>) = (e.before.lines().collect(), e.after.lines().collect());
    let head = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = b[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let s = |v: &[&str]| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    (s(&b[head..b.len() - tail]), s(&a[head..a.len() - tail]))
}

struct Case {
    name: &'static str,
    tree: MemTree,
    root: &'static str,
    action: Action,
    /// file -> (removed lines, added lines); empty with `error` set.
    want: Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)>,
    error: Option<&'static str>,
}

fn set_image(t: WorkloadRef, c: &str, image: &str) -> Action {
    Action::SetImage {
        target: t,
        container: c.into(),
        image: image.into(),
    }
}

fn cases() -> Vec<Case> {
    let k = "kubectl-style.yaml";
    let q = "indented-quoted.yaml";
    let f = "flow.yaml";
    let m = "multi-document.yaml";
    let a = "anchors.yaml";
    let ok = |name, tree, action, want| Case {
        name,
        tree,
        root: "",
        action,
        want,
        error: None,
    };
    vec![
        ok(
            "kubectl style: image, comment kept",
            only(k),
            set_image(deploy("web"), "web", "nginx:1.27.3"),
            vec![(
                k,
                vec!["        image: nginx:1.27.O # pinned on purpose"],
                vec!["        image: nginx:1.27.3 # pinned on purpose"],
            )],
        ),
        ok(
            "kubectl style: the second container's image",
            only(k),
            set_image(deploy("web"), "sidecar", "busybox:1.36.1"),
            vec![(
                k,
                vec!["        image: busybox:1.36"],
                vec!["        image: busybox:1.36.1"],
            )],
        ),
        ok(
            "kubectl style: memory limit and a new request",
            only(k),
            Action::SetResources {
                target: deploy("web"),
                container: "web".into(),
                memory_limit: "128Mi".into(),
                memory_request: Some("128Mi".into()),
            },
            vec![(
                k,
                vec!["            memory: 64Mi"],
                vec![
                    "            memory: 128Mi",
                    "          requests:",
                    "            memory: 128Mi",
                ],
            )],
        ),
        ok(
            "kubectl style: a probe's port and path, its scheme dropped as the live patch drops it",
            only(k),
            Action::SetProbe {
                target: deploy("web"),
                container: "web".into(),
                probe: ProbeKind::Liveness,
                handler: ProbeHandler::HttpGet {
                    path: "/".into(),
                    port: 80,
                },
            },
            vec![(
                k,
                vec![
                    "            path: /healthz",
                    "            port: 8080",
                    "            scheme: HTTP",
                ],
                vec!["            path: /", "            port: 80"],
            )],
        ),
        ok(
            "kubectl style: an HTTP probe becomes a TCP check, timings kept",
            only(k),
            Action::SetProbe {
                target: deploy("web"),
                container: "web".into(),
                probe: ProbeKind::Liveness,
                handler: ProbeHandler::TcpSocket { port: 80 },
            },
            vec![(
                k,
                vec![
                    "          httpGet:",
                    "            path: /healthz",
                    "            port: 8080",
                    "            scheme: HTTP",
                    "          periodSeconds: 5 # fast",
                ],
                vec![
                    "          periodSeconds: 5 # fast",
                    "          tcpSocket:",
                    "            port: 80",
                ],
            )],
        ),
        ok(
            "kubectl style: command and args dropped",
            only(k),
            Action::DropCommand {
                target: deploy("web"),
                container: "web".into(),
            },
            vec![(
                k,
                vec![
                    "        command: [\"nginx-debug\"]",
                    "        args:",
                    "        - -g",
                    "        - daemon off;",
                ],
                vec![],
            )],
        ),
        ok(
            "kubectl style: a nodeSelector key removed, its neighbour and comment kept",
            only(k),
            Action::SetNodeSelector {
                target: deploy("web"),
                remove: vec!["disktype".into()],
                set: BTreeMap::new(),
            },
            vec![(
                k,
                vec!["        disktype: nvme   # no node has this"],
                vec![],
            )],
        ),
        ok(
            "kubectl style: a nodeSelector value set",
            only(k),
            Action::SetNodeSelector {
                target: deploy("web"),
                remove: vec![],
                set: BTreeMap::from([("disktype".to_string(), "ssd".to_string())]),
            },
            vec![(
                k,
                vec!["        disktype: nvme   # no node has this"],
                vec!["        disktype: ssd   # no node has this"],
            )],
        ),
        ok(
            "kubectl style: an env list created in the file's list style",
            only(k),
            Action::SetEnv {
                target: deploy("web"),
                container: "sidecar".into(),
                name: "TOKEN".into(),
                from: EnvSource::SecretKey {
                    name: "web".into(),
                    key: "TOKEN".into(),
                },
            },
            vec![(
                k,
                vec![],
                vec![
                    "        env:",
                    "        - name: TOKEN",
                    "          valueFrom:",
                    "            secretKeyRef:",
                    "              name: web",
                    "              key: TOKEN",
                ],
            )],
        ),
        ok(
            "indented and quoted: the image keeps its quotes and comment",
            only(q),
            set_image(deploy("web"), "web", "nginx:1.27.3"),
            vec![(
                q,
                vec!["                    image: \"nginx:1.27.O\"    # the tag has a letter O"],
                vec!["                    image: \"nginx:1.27.3\"    # the tag has a letter O"],
            )],
        ),
        ok(
            "indented and quoted: an env item appended at four spaces",
            only(q),
            Action::SetEnv {
                target: deploy("web"),
                container: "web".into(),
                name: "DB_URL".into(),
                from: EnvSource::ConfigMapKey {
                    name: "db".into(),
                    key: "url".into(),
                },
            },
            vec![(
                q,
                vec![],
                vec![
                    "                        -   name: DB_URL",
                    "                            valueFrom:",
                    "                                configMapKeyRef:",
                    "                                    name: db",
                    "                                    key: url",
                ],
            )],
        ),
        ok(
            "indented and quoted: a readiness probe's port",
            only(q),
            Action::SetProbe {
                target: deploy("web"),
                container: "web".into(),
                probe: ProbeKind::Readiness,
                handler: ProbeHandler::TcpSocket { port: 80 },
            },
            vec![(
                q,
                vec!["                            port: 81"],
                vec!["                            port: 80"],
            )],
        ),
        ok(
            "flow style: the image in a one-line container",
            only(f),
            set_image(deploy("web"), "web", "nginx:1.27.3"),
            vec![(
                f,
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.O', resources: {limits: {memory: 64Mi}}, command: [nginx-debug]}]",
                ],
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.3', resources: {limits: {memory: 64Mi}}, command: [nginx-debug]}]",
                ],
            )],
        ),
        ok(
            "flow style: memory and command on one line",
            only(f),
            Action::SetResources {
                target: deploy("web"),
                container: "web".into(),
                memory_limit: "128Mi".into(),
                memory_request: None,
            },
            vec![(
                f,
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.O', resources: {limits: {memory: 64Mi}}, command: [nginx-debug]}]",
                ],
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.O', resources: {limits: {memory: 128Mi}}, command: [nginx-debug]}]",
                ],
            )],
        ),
        ok(
            "flow style: the command dropped from a flow mapping",
            only(f),
            Action::DropCommand {
                target: deploy("web"),
                container: "web".into(),
            },
            vec![(
                f,
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.O', resources: {limits: {memory: 64Mi}}, command: [nginx-debug]}]",
                ],
                vec![
                    "      containers: [{name: web, image: 'nginx:1.27.O', resources: {limits: {memory: 64Mi}}}]",
                ],
            )],
        ),
        ok(
            "flow style: a selector key removed from a flow mapping",
            only(f),
            Action::SetNodeSelector {
                target: deploy("web"),
                remove: vec!["disktype".into()],
                set: BTreeMap::new(),
            },
            vec![(
                f,
                vec!["      nodeSelector: {disktype: nvme, zone: a}"],
                vec!["      nodeSelector: {zone: a}"],
            )],
        ),
        ok(
            "flow style: the whole selector removed when no key is left",
            only(f),
            Action::SetNodeSelector {
                target: deploy("web"),
                remove: vec!["disktype".into(), "zone".into()],
                set: BTreeMap::new(),
            },
            vec![(
                f,
                vec!["      nodeSelector: {disktype: nvme, zone: a}"],
                vec![],
            )],
        ),
        ok(
            "several documents: only the named Deployment's line, not its namesake Service or the other Deployment",
            only(m),
            set_image(deploy("web"), "web", "nginx:1.27.3"),
            vec![(
                m,
                vec!["          image: nginx:1.27.O"],
                vec!["          image: nginx:1.27.3"],
            )],
        ),
        ok(
            "several documents: the Service's port found by its number, its target added in flow style",
            only(m),
            Action::SetServiceTargetPort {
                target: target(WorkloadKind::Service, "web"),
                port: 80,
                target_port: "http".into(),
            },
            vec![(
                m,
                vec!["  ports: [{port: 80}]"],
                vec!["  ports: [{port: 80, targetPort: http}]"],
            )],
        ),
        ok(
            "several documents: resources added before the comment that follows",
            only(m),
            Action::SetResources {
                target: deploy("web"),
                container: "web".into(),
                memory_limit: "128Mi".into(),
                memory_request: None,
            },
            vec![(
                m,
                vec![],
                vec![
                    "          resources:",
                    "            limits:",
                    "              memory: 128Mi",
                ],
            )],
        ),
        ok(
            "anchors elsewhere: the image is edited, the aliases stay",
            only(a),
            set_image(deploy("web"), "web", "nginx:1.27.3"),
            vec![(
                a,
                vec!["          image: nginx:1.27.O"],
                vec!["          image: nginx:1.27.3"],
            )],
        ),
        Case {
            name: "anchors: resources shared by an alias are refused",
            tree: only(a),
            root: "",
            action: Action::SetResources {
                target: deploy("web"),
                container: "web".into(),
                memory_limit: "128Mi".into(),
                memory_request: None,
            },
            want: vec![],
            error: Some("anchored and used elsewhere"),
        },
        Case {
            name: "anchors: resources that are an alias are refused",
            tree: only(a),
            root: "",
            action: Action::SetResources {
                target: deploy("web"),
                container: "worker".into(),
                memory_limit: "128Mi".into(),
                memory_request: None,
            },
            want: vec![],
            error: Some("alias"),
        },
        ok(
            "StatefulSet: a readiness probe added where none was",
            only("statefulset.yaml"),
            Action::SetProbe {
                target: target(WorkloadKind::StatefulSet, "db"),
                container: "db".into(),
                probe: ProbeKind::Readiness,
                handler: ProbeHandler::TcpSocket { port: 5432 },
            },
            vec![(
                "statefulset.yaml",
                vec![],
                vec![
                    "        readinessProbe:",
                    "          tcpSocket:",
                    "            port: 5432",
                ],
            )],
        ),
        ok(
            "CronJob: the job template's command dropped",
            only("cronjob.yaml"),
            Action::DropCommand {
                target: target(WorkloadKind::CronJob, "report"),
                container: "report".into(),
            },
            vec![(
                "cronjob.yaml",
                vec![
                    "            command:",
                    "            - sh",
                    "            - -c",
                    "            - report.sh",
                ],
                vec![],
            )],
        ),
        Case {
            name: "kustomize prod: the tag is set by the overlay's images entry, edited there",
            tree: tree(),
            root: "kustomize/overlays/prod",
            action: set_image(deploy("web"), "web", "nginx:1.27.3"),
            want: vec![(
                "kustomize/overlays/prod/kustomization.yaml",
                vec!["    newTag: 1.27.O # bumped by the release bot"],
                vec!["    newTag: 1.27.3 # bumped by the release bot"],
            )],
            error: None,
        },
        Case {
            name: "kustomize prod: memory is set by the overlay patch, edited there",
            tree: tree(),
            root: "kustomize/overlays/prod",
            action: Action::SetResources {
                target: deploy("web"),
                container: "web".into(),
                memory_limit: "192Mi".into(),
                memory_request: None,
            },
            want: vec![(
                "kustomize/overlays/prod/memory.yaml",
                vec!["              memory: 96Mi # prod is busier"],
                vec!["              memory: 192Mi # prod is busier"],
            )],
            error: None,
        },
        Case {
            name: "kustomize staging: the image is set by a strategic-merge patch, edited there",
            tree: tree(),
            root: "kustomize/overlays/staging",
            action: set_image(deploy("web"), "web", "nginx:1.27.3"),
            want: vec![(
                "kustomize/overlays/staging/command.yaml",
                vec!["          image: nginx:1.27.O"],
                vec!["          image: nginx:1.27.3"],
            )],
            error: None,
        },
        Case {
            name: "kustomize staging: a command set by the patch is dropped there",
            tree: tree(),
            root: "kustomize/overlays/staging",
            action: Action::DropCommand {
                target: deploy("web"),
                container: "web".into(),
            },
            want: vec![(
                "kustomize/overlays/staging/command.yaml",
                vec!["          command: [nginx-debug]"],
                vec![],
            )],
            error: None,
        },
        Case {
            name: "kustomize: another namespace's object is not found",
            tree: tree(),
            root: "kustomize/overlays/prod",
            action: set_image(
                WorkloadRef::new(WorkloadKind::Deployment, "other", "web"),
                "web",
                "nginx:1.27.3",
            ),
            want: vec![],
            error: Some("is not defined under"),
        },
        Case {
            name: "a path out of the repository is refused",
            tree: tree(),
            root: "../etc",
            action: set_image(deploy("web"), "web", "nginx:1.27.3"),
            want: vec![],
            error: Some("leaves the repository"),
        },
    ]
}

#[test]
fn every_action_edits_only_its_lines() {
    let mut failures = Vec::new();
    for case in cases() {
        let t = case.action.target().unwrap().clone();
        let target = Target {
            kind: t.kind,
            namespace: t.namespace,
            name: t.name,
        };
        match (
            kustomize::plan(&case.tree, case.root, &target, &case.action),
            case.error,
        ) {
            (Ok(edits), None) => {
                let got: Vec<(String, Vec<String>, Vec<String>)> = edits
                    .iter()
                    .map(|e| {
                        let (r, a) = changed(e);
                        (e.path.clone(), r, a)
                    })
                    .collect();
                let want: Vec<(String, Vec<String>, Vec<String>)> = case
                    .want
                    .iter()
                    .map(|(f, r, a)| {
                        let s = |v: &[&str]| v.iter().map(|l| l.to_string()).collect();
                        (f.to_string(), s(r), s(a))
                    })
                    .collect();
                if got != want {
                    failures.push(format!("{}:\n  want {want:#?}\n  got  {got:#?}", case.name));
                }
            }
            (Err(e), Some(want)) if e.to_string().contains(want) => {}
            (got, want) => failures.push(format!(
                "{}: want error {want:?}, got {:?}",
                case.name,
                got.map(|e| e.len())
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The real kustomize builds the edited overlay into the object the action makes.
#[test]
fn kubectl_kustomize_builds_the_edited_overlays_as_intended() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl is not installed: the check against the real kustomize is skipped");
        return;
    }
    let build = |files: &BTreeMap<String, String>, root: &str| -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let out = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(dir.path().join(root))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs =
            reflexion_core::gitops::yaml::to_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
        docs.into_iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap()
    };
    for case in cases()
        .into_iter()
        .filter(|c| c.root.starts_with("kustomize") && c.error.is_none())
    {
        let t = case.action.target().unwrap().clone();
        let target = Target {
            kind: t.kind,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        };
        let found = kustomize::find(&case.tree, case.root, &target).unwrap();
        assert_eq!(
            build(&case.tree.0, case.root),
            found.effective,
            "{}: our build of the overlay",
            case.name
        );
        let edits = kustomize::plan(&case.tree, case.root, &target, &case.action).unwrap();
        let mut files = case.tree.0.clone();
        for e in edits {
            files.insert(e.path, e.after);
        }
        let mut want = found.effective.clone();
        let ops =
            reflexion_core::gitops::edit::ops(&case.action, target.kind, &found.effective).unwrap();
        reflexion_core::gitops::edit::apply(&mut want, &ops);
        assert_eq!(build(&files, case.root), want, "{}", case.name);
    }
}
