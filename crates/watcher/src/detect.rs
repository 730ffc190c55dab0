//! The watch loop: every pod change is classified; a new failure becomes one report. Failed readiness probes are
//! watched as events, because a pod that never becomes Ready gets no status update to classify.

use crate::dedup::{Dedup, FailureKey};
use crate::delivery::Sender;
use crate::metrics::Metrics;
use crate::projection::{REVISION_LABELS, WatchedPod};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use reflexion_core::classify::{Failure, PodEvent, is_ready, readiness_keeps_failing};
use reflexion_core::owner::{WorkloadRef, fix_target};
use reflexion_core::report::{FailureReport, K8sData, MAX_EVENTS};
use reflexion_core::revision::terminating;
use reflexion_core::{Signature, classify};
use reflexion_k8s::OwnerChains;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Detector {
    client: Client,
    owners: OwnerChains,
    dedup: Dedup,
    sender: Sender,
    metrics: Arc<Metrics>,
    cluster: Option<String>,
    /// How long a Service may have no endpoint before it is reported (`services`).
    service_grace: Duration,
    service_wait: crate::services::Grace,
    port_wait: crate::services::Grace,
}

/// Which Event an object-level report comes from.
#[derive(Clone, Copy)]
enum ObjectEvent {
    FailedCreate,
    Deadline,
}

/// What is wrong with a Service, as a report says it.
struct ServiceSaid<'a> {
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    error_type: &'static str,
    signature: &'static str,
    /// What is wrong about it now (its selector, or its port and target): reported once per value.
    what: String,
}

impl ServiceSaid<'_> {
    fn key(&self) -> FailureKey {
        FailureKey {
            namespace: self.namespace.to_string(),
            workload_kind: "Service".into(),
            workload_name: self.name.to_string(),
            container: String::new(),
            family: self.signature.to_string(),
            revision: format!("{}/{}", self.uid, self.what),
        }
    }
}

/// How often Services are looked at for endpoints.
const SERVICE_LOOK: Duration = Duration::from_secs(5);

impl Detector {
    pub fn new(client: Client, sender: Sender, cooldown: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            owners: OwnerChains::cached(client.clone()),
            client,
            dedup: Dedup::new(cooldown),
            sender,
            metrics,
            cluster: None,
            service_grace: Duration::from_secs(30),
            service_wait: Default::default(),
            port_wait: Default::default(),
        }
    }

    /// How long a Service may select no pod before it is reported.
    pub fn service_grace(mut self, grace: Duration) -> Self {
        self.service_grace = grace;
        self
    }

    /// Name the cluster in every report, so the API acts on this cluster only.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = Some(name.into());
        self
    }

    /// Watch pods until `shutdown` resolves. Watch errors (including 410 Gone) are retried with back-off by
    /// re-listing, which kube's watcher does for us.
    pub async fn run(
        mut self,
        namespace: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let (pods, events): (Api<WatchedPod>, Api<Event>) = match &namespace {
            Some(ns) => (
                Api::namespaced(self.client.clone(), ns),
                Api::namespaced(self.client.clone(), ns),
            ),
            None => (Api::all(self.client.clone()), Api::all(self.client.clone())),
        };
        let pod_stream = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let event_stream = watcher(
            events.clone(),
            watcher::Config::default().fields("reason=Unhealthy,involvedObject.kind=Pod"),
        )
        .default_backoff()
        .applied_objects();
        // A workload whose pods the API server refuses has no pod to watch: its ReplicaSet's FailedCreate says so.
        let refusal_stream = watcher(
            events,
            watcher::Config::default().fields("reason=FailedCreate"),
        )
        .default_backoff()
        .applied_objects();
        // A Job stopped at its deadline has no pod left; a rollout past its deadline may have none failing.
        let deadline_events: Api<Event> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let deadline_stream = watcher(
            deadline_events,
            watcher::Config::default().fields("reason=DeadlineExceeded,involvedObject.kind=Job"),
        )
        .default_backoff()
        .applied_objects();
        let deployments: Api<Deployment> = match &namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let deployment_stream = watcher(deployments, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        // Services and their EndpointSlices, mirrored: a Service that selects no pod shows in no pod.
        let (services, slices) = match &namespace {
            Some(ns) => (
                Api::<Service>::namespaced(self.client.clone(), ns),
                Api::<EndpointSlice>::namespaced(self.client.clone(), ns),
            ),
            None => (Api::all(self.client.clone()), Api::all(self.client.clone())),
        };
        let (service_store, writer) = reflector::store();
        let service_stream = reflector(writer, watcher(services, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let (slice_store, writer) = reflector::store();
        let slice_stream = reflector(writer, watcher(slices, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let mut service_look = tokio::time::interval(SERVICE_LOOK);
        futures::pin_mut!(pod_stream);
        futures::pin_mut!(event_stream);
        futures::pin_mut!(refusal_stream);
        futures::pin_mut!(service_stream);
        futures::pin_mut!(slice_stream);
        futures::pin_mut!(deadline_stream);
        futures::pin_mut!(deployment_stream);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                Some(next) = service_stream.next() => if let Err(e) = next {
                    tracing::warn!(error = %e, "service watch error; retrying");
                },
                Some(next) = slice_stream.next() => if let Err(e) = next {
                    tracing::warn!(error = %e, "EndpointSlice watch error; retrying");
                },
                _ = service_look.tick() => self.look_at_services(&service_store, &slice_store).await,
                next = pod_stream.next() => match next {
                    Some(Ok(pod)) => self.observe(&pod.to_pod()).await,
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying"),
                    None => return,
                },
                next = event_stream.next() => match next {
                    Some(Ok(event)) => self.observe_unhealthy(event).await,
                    Some(Err(e)) => tracing::warn!(error = %e, "event watch error; retrying"),
                    None => return,
                },
                Some(next) = deadline_stream.next() => match next {
                    Ok(event) => self.observe_object_event(event, ObjectEvent::Deadline).await,
                    Err(e) => tracing::warn!(error = %e, "DeadlineExceeded event watch error; retrying"),
                },
                Some(next) = deployment_stream.next() => match next {
                    Ok(d) => self.observe_deployment(&d).await,
                    Err(e) => tracing::warn!(error = %e, "deployment watch error; retrying"),
                },
                next = refusal_stream.next() => match next {
                    Some(Ok(event)) => self.observe_object_event(event, ObjectEvent::FailedCreate).await,
                    Some(Err(e)) => tracing::warn!(error = %e, "FailedCreate event watch error; retrying"),
                    None => return,
                },
            }
        }
    }

    /// A readiness probe that keeps failing: the pod is read again and classified with its events.
    async fn observe_unhealthy(&mut self, event: Event) {
        let involved = event.involved_object.clone();
        let ev = PodEvent::from(event);
        if !readiness_keeps_failing(&ev) {
            return;
        }
        let (Some(ns), Some(name)) = (involved.namespace, involved.name) else {
            return;
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = match pods.get_opt(&name).await {
            Ok(Some(pod)) if pod.uid() == involved.uid && !terminating(&pod) => pod,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, pod = %name, "could not read a pod whose readiness probe fails");
                return;
            }
        };
        // The triggering event is enough to classify; the dedup check in `report` comes before listing the
        // pod's events, since the kubelet repeats this event on every failed probe.
        if let Some(failure) = classify(&pod, &[ev]) {
            self.report(&pod, failure).await;
        }
    }

    /// An Event that says a workload fails with no pod to show it — a ReplicaSet or Job the API server refuses pods
    /// to (a quota, Pod Security, a missing ServiceAccount), or a Job the job controller stopped at its
    /// `activeDeadlineSeconds` (its pods deleted): one report on the workload that owns the object per revision or
    /// run, named after the object.
    async fn observe_object_event(&mut self, event: Event, said: ObjectEvent) {
        use reflexion_core::refusal::{FAILED_CREATE, Refusal};
        use reflexion_core::stalled::ACTIVE_DEADLINE;
        let involved = event.involved_object.clone();
        let ev = PodEvent::from(event);
        let (Some(ns), Some(name)) = (involved.namespace.clone(), involved.name.clone()) else {
            return;
        };
        let owners = match said {
            ObjectEvent::FailedCreate => crate::refused::owners(&self.client, &involved).await,
            ObjectEvent::Deadline => crate::stalled::job_owners(&self.client, &involved).await,
        };
        let (chain, revision) = match owners {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, object = %name, reason = %ev.reason, "could not read the object an event is about");
                return;
            }
        };
        let (error_type, family) = match said {
            ObjectEvent::FailedCreate => (
                FAILED_CREATE,
                format!("failed_create/{}", Refusal::of(&ev.message).cause()),
            ),
            ObjectEvent::Deadline => (ACTIVE_DEADLINE, "stalled/active_deadline".to_string()),
        };
        self.report_object(&name, &ns, chain, revision, error_type, family, vec![ev])
            .await;
    }

    /// A Deployment whose rollout passed its progress deadline: one report per revision.
    async fn observe_deployment(&mut self, d: &Deployment) {
        use reflexion_core::stalled::PROGRESS_DEADLINE;
        let Some(message) = crate::stalled::timed_out(d) else {
            return;
        };
        let (name, ns) = (d.name_any(), d.namespace().unwrap_or_default());
        let (chain, revision) = crate::stalled::deployment_chain(d);
        let ev = PodEvent {
            type_: "Warning".into(),
            reason: PROGRESS_DEADLINE.into(),
            message,
            count: 1,
        };
        let family = "stalled/progress_deadline".to_string();
        self.report_object(
            &name,
            &ns,
            chain,
            revision,
            PROGRESS_DEADLINE,
            family,
            vec![ev],
        )
        .await;
    }

    /// One report for a workload whose failure shows on an object, not in a pod (`object` names it), once per
    /// revision and family.
    #[allow(clippy::too_many_arguments)]
    async fn report_object(
        &mut self,
        object: &str,
        ns: &str,
        chain: Vec<reflexion_core::owner::OwnerLink>,
        revision: String,
        error_type: &str,
        family: String,
        events: Vec<PodEvent>,
    ) {
        let Some(target) = fix_target(ns, &chain) else {
            return;
        };
        let key = FailureKey {
            namespace: ns.to_string(),
            workload_kind: target.kind.to_string(),
            workload_name: target.name.clone(),
            container: String::new(),
            family,
            revision,
        };
        if !self.dedup.should_report(&key, Instant::now()) {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let report = FailureReport {
            pod_name: object.to_string(),
            namespace: ns.to_string(),
            error_type: error_type.into(),
            idempotency_key: Some(format!(
                "{}-{}-{}",
                chain.first().map(|l| l.uid.as_str()).unwrap_or_default(),
                error_type.to_ascii_lowercase(),
                key.revision.split('/').next().unwrap_or_default()
            )),
            cluster: self.cluster.clone(),
            real_k8s_data: K8sData {
                events,
                owner_chain: chain,
                signature: Some(key.family.clone()),
                detected_at: Some(chrono::Utc::now().to_rfc3339()),
                ..K8sData::default()
            },
        };
        tracing::info!(object, namespace = %report.namespace, workload = %target, family = %key.family, "workload failing with no failing pod");
        self.spool(&report, &key, &target);
    }

    /// Services that have selected no pod, or whose named target port no pod declares, for the grace period: one
    /// report each per selector (or port and target), on the Service.
    async fn look_at_services(
        &mut self,
        services: &reflector::Store<Service>,
        slices: &reflector::Store<EndpointSlice>,
    ) {
        use crate::services::{unrouted_ports, without_endpoints};
        use reflexion_core::service::{NO_ENDPOINTS, TARGET_PORT_NOT_FOUND};
        let (services, slices) = (services.state(), slices.state());
        let services: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        let empty = without_endpoints(&services, &slices);
        let unrouted = unrouted_ports(&services, &slices);
        let now = Instant::now();
        for e in self.service_wait.due(empty, self.service_grace, now) {
            let said = ServiceSaid {
                namespace: &e.namespace,
                name: &e.name,
                uid: &e.uid,
                error_type: NO_ENDPOINTS,
                signature: "no_endpoints/selector_mismatch",
                what: e.selector_text(),
            };
            let key = said.key();
            if !self.dedup.should_report(&key, now) {
                continue;
            }
            // No endpoint may still mean pods that have no address yet (Pending): those fail on their own.
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &e.namespace);
            match pods
                .list_metadata(
                    &kube::api::ListParams::default()
                        .labels(&e.selector_text())
                        .limit(1),
                )
                .await
            {
                Ok(list) if list.items.is_empty() => {}
                Ok(_) => {
                    self.dedup.forget(&key);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, service = %e.name, "could not list the pods a Service selects");
                    self.dedup.forget(&key);
                    continue;
                }
            }
            tracing::info!(service = %e.name, namespace = %e.namespace, selector = %e.selector_text(), "service selects no pod");
            self.report_service(&said, &key);
        }
        for u in self.port_wait.due(unrouted, self.service_grace, now) {
            let said = ServiceSaid {
                namespace: &u.namespace,
                name: &u.name,
                uid: &u.uid,
                error_type: TARGET_PORT_NOT_FOUND,
                signature: "no_endpoints/target_port",
                what: format!("{}:{}", u.port, u.target),
            };
            let key = said.key();
            if !self.dedup.should_report(&key, now) {
                continue;
            }
            tracing::info!(service = %u.name, namespace = %u.namespace, port = u.port, target = %u.target, "service port targets a port no pod declares");
            self.report_service(&said, &key);
        }
    }

    /// Spool a report on a Service.
    fn report_service(&mut self, said: &ServiceSaid<'_>, key: &FailureKey) {
        use reflexion_core::owner::OwnerLink;
        let target = WorkloadRef::new(
            reflexion_core::WorkloadKind::Service,
            said.namespace,
            said.name,
        );
        let report = FailureReport {
            pod_name: said.name.to_string(),
            namespace: said.namespace.to_string(),
            error_type: said.error_type.into(),
            idempotency_key: Some(format!(
                "{}-{}-{}",
                said.uid,
                said.signature.replace(['_', '/'], "-"),
                short_hash(&said.what)
            )),
            cluster: self.cluster.clone(),
            real_k8s_data: K8sData {
                owner_chain: vec![OwnerLink {
                    kind: "Service".into(),
                    name: said.name.to_string(),
                    uid: said.uid.to_string(),
                }],
                signature: Some(said.signature.into()),
                detected_at: Some(chrono::Utc::now().to_rfc3339()),
                ..K8sData::default()
            },
        };
        self.spool(&report, key, &target);
    }

    /// `pod` is the watch stream's projection ([`WatchedPod`]).
    async fn observe(&mut self, pod: &Pod) {
        // A pod being deleted is on its way out, whatever it shows.
        if terminating(pod) {
            return;
        }
        let Some(failure) = classify(pod, &[]) else {
            if is_ready(pod)
                && pod
                    .owner_references()
                    .iter()
                    .all(|r| r.controller != Some(true))
            {
                self.dedup.clear_workload(
                    &pod.namespace().unwrap_or_default(),
                    "Pod",
                    &pod.name_any(),
                );
            }
            return;
        };
        self.report(pod, failure).await;
    }

    /// One report per new failure: the owning workload, the dedup key, the evidence, then the spool. The pod is the
    /// watch stream's projection (reading it again in full per report cost 14 ms each against a busy API server in
    /// the detection bench, and the API reads what it needs live).
    async fn report(&mut self, pod: &Pod, failure: Failure) {
        let ns = pod.namespace().unwrap_or_default();
        // A chain cut short by a failed read would name the ReplicaSet, not the Deployment: the pod's next update
        // tries again.
        let chain = match self.owners.chain(pod).await {
            Ok(chain) => chain,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "could not read the pod's owners; will retry on its next update");
                return;
            }
        };
        let Some(target) = fix_target(&ns, &chain) else {
            tracing::debug!(pod = %pod.name_any(), "failing pod has an owner kind we do not manage");
            return;
        };
        let key = FailureKey {
            namespace: ns.clone(),
            workload_kind: target.kind.to_string(),
            workload_name: target.name.clone(),
            container: failure.container.clone(),
            family: failure.kind.as_str().to_string(),
            // The template hash, and the owning object's uid: a Deployment deleted and created again is a new
            // object, and its failure a new incident even when its template is identical.
            revision: format!(
                "{}/{}",
                REVISION_LABELS
                    .iter()
                    .find_map(|l| pod.labels().get(*l).cloned())
                    .unwrap_or_default(),
                chain.last().map(|l| l.uid.as_str()).unwrap_or_default()
            ),
        };
        if !self.dedup.should_report(&key, Instant::now()) {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A pod of a ReplicaSet its Deployment has scaled away belongs to a revision that is going: its failure is
        // not the workload's.
        if reflexion_k8s::scaled_away(&self.client, pod)
            .await
            .unwrap_or(false)
        {
            self.dedup.forget(&key);
            return;
        }
        let events = reflexion_k8s::pod_events(&self.client, pod, MAX_EVENTS.min(20))
            .await
            .unwrap_or_default();
        let failure = classify(pod, &events).unwrap_or(failure);
        let signature = Signature::of(&failure);
        let report = FailureReport {
            pod_name: pod.name_any(),
            namespace: ns,
            error_type: failure.reason.clone(),
            idempotency_key: Some(format!(
                "{}-{}-{}",
                pod.uid().unwrap_or_default(),
                failure.container,
                failure.kind.as_str()
            )),
            cluster: self.cluster.clone(),
            real_k8s_data: K8sData {
                pod: serde_json::to_value(strip(pod)).ok(),
                container_statuses: pod
                    .status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .filter_map(|s| serde_json::to_value(s).ok())
                    .collect(),
                events,
                owner_chain: chain,
                signature: Some(signature.class()),
                container: Some(failure.container.clone()),
                image: Some(failure.image.clone()),
                detected_at: Some(chrono::Utc::now().to_rfc3339()),
            },
        };
        tracing::info!(pod = %report.pod_name, namespace = %report.namespace, workload = %target, signature = %signature, "failure detected");
        self.spool(&report, &key, &target);
    }

    /// Spool a report; one that cannot be spooled is forgotten by the dedup, so the failure's next sighting
    /// reports it again.
    fn spool(&mut self, report: &FailureReport, key: &FailureKey, target: &WorkloadRef) {
        match self.sender.send(report) {
            Ok(()) => {
                self.metrics.detected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, workload = %target, "could not spool the report; will retry when the failure is seen again");
                self.dedup.forget(key);
            }
        }
    }
}

/// A short stable hash (FNV-1a) of a selector, for an idempotency key that stays within its bound.
fn short_hash(s: &str) -> String {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The pod without managedFields, which are large and say nothing about the failure.
fn strip(pod: &Pod) -> Pod {
    let mut p = pod.clone();
    p.metadata.managed_fields = None;
    p
}
