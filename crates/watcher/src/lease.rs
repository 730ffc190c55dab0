//! Leader election on a coordination.k8s.io Lease, so several watcher replicas can run and only the leader
//! reports. The holder renews the lease every `renew` period; a replica takes it over when it has not been renewed
//! for `duration`. Every write is a compare-and-swap on the lease's resourceVersion, so two replicas cannot both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

/// What to do with a lease as read, at `now` (seconds since the epoch, as the lease's times are).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's and expired (or released): take it over.
    TakeOver,
    /// Someone else's and live.
    Follow { holder: String },
}

/// The decision for one observation of the lease; pure, so it is table-tested.
pub fn step(lease: Option<&LeaseSpec>, me: &str, now_micros: i64) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_microsecond())
        .unwrap_or(0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 1_000_000;
    if holder.is_empty() || renewed + duration < now_micros {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Run the election until the process ends; `true` is published on the channel while this replica leads.
pub fn spawn(client: Client, config: LeaseConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        loop {
            let leading = match try_lead(&api, &config).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %config.name, "lease update failed");
                    // Without a successful renewal we can no longer be sure we lead.
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %config.identity, leading, "leadership changed");
            }
            if tx.send(leading).is_err() {
                return;
            }
            tokio::time::sleep(config.renew).await;
        }
    });
    rx
}

async fn try_lead(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let now_micros = k8s_openapi::jiff::Timestamp::now().as_microsecond();
    let pp = PostParams::default();
    let duration = i32::try_from(config.duration.as_secs()).unwrap_or(15);
    match step(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &config.identity,
        now_micros,
    ) {
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            conflict_is_false(api.create(&pp, &lease).await)
        }
        Step::Renew | Step::TakeOver => {
            let Some(mut lease) = current else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
                spec.holder_identity = Some(config.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration);
            // replace carries the resourceVersion we read: a concurrent writer makes this a 409.
            conflict_is_false(api.replace(&config.name, &pp, &lease).await)
        }
        Step::Follow { .. } => Ok(false),
    }
}

fn conflict_is_false(r: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(renewed_secs).unwrap_or_default(),
            )),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = 1_000 * 1_000_000;
        let cases = [
            (None, Step::Create),
            (Some(spec("me", 999, 15)), Step::Renew),
            // Ours even when expired: renew it.
            (Some(spec("me", 1, 15)), Step::Renew),
            (
                Some(spec("other", 990, 15)),
                Step::Follow {
                    holder: "other".into(),
                },
            ),
            (Some(spec("other", 980, 15)), Step::TakeOver),
            (Some(spec("", 999, 15)), Step::TakeOver),
        ];
        for (lease, want) in cases {
            assert_eq!(step(lease.as_ref(), "me", now), want, "{lease:?}");
        }
    }
}
