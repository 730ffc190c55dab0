//! Where an incident's fixes land: live, in the Git source a GitOps controller applies, or nowhere kube-reflexion
//! writes (a Helm release; a GitOps source it cannot commit to) — decided from the workload's owner of record and
//! the policy (`gitops: live` keeps live patches for GitOps-owned workloads), and recorded on the incident.

use super::{Diagnosis, Engine, EngineError};
use crate::cluster::{ClusterError, Controller};
use crate::db::Incident;
use reflexion_core::gitops::OwnerOfRecord;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::policy::GitopsMode;
use reflexion_gitops::Source;
use serde_json::json;

#[derive(Debug, Clone)]
pub(in crate::engine) enum Route {
    Live,
    Git {
        source: Source,
        controller: Controller,
    },
    /// Fixed where kube-reflexion does not write: the incident is handed over naming the owner.
    Hand {
        owner: OwnerOfRecord,
        why: String,
    },
}

impl Route {
    fn lands(&self) -> &'static str {
        match self {
            Route::Live => "live",
            Route::Git { .. } => "git",
            Route::Hand { .. } => "by_hand",
        }
    }
}

impl Engine {
    /// The route of the incident's fixes, read from the cluster now, recorded on the incident and put in the
    /// diagnosis's evidence (stored with it by the caller that stores the evidence).
    pub(in crate::engine) async fn route_of(
        &self,
        inc: &Incident,
        diag: &mut Diagnosis,
    ) -> Result<Route, EngineError> {
        let (route, record) = self.route(inc, &diag.target).await?;
        diag.evidence["owner_of_record"] = record;
        Ok(route)
    }

    /// The route of the incident's fixes, read from the cluster now and recorded on the incident; and the record.
    pub(in crate::engine) async fn route(
        &self,
        inc: &Incident,
        target: &WorkloadRef,
    ) -> Result<(Route, serde_json::Value), EngineError> {
        let cfg = &self.inner.config;
        let rec = match self
            .scope
            .cluster
            .owner_of_record(target, &cfg.argocd_namespace)
            .await
        {
            Ok(r) => r,
            // Gone meanwhile: diagnosis says so; nothing to route.
            Err(ClusterError::NotFound(_)) => return Ok((Route::Live, serde_json::Value::Null)),
            Err(e) => return Err(e.into()),
        };
        let mode = self.scope.policy.gitops_mode(&target.namespace);
        let owner = rec.owner.clone();
        let route = match (&owner, rec.source.clone(), rec.controller.clone()) {
            (OwnerOfRecord::Live, ..) => Route::Live,
            (o, ..) if o.is_gitops() && mode == GitopsMode::Live => Route::Live,
            (OwnerOfRecord::Helm { .. }, ..) => Route::Hand {
                why: format!(
                    "{target} is managed by the {}: a live change is undone by the next upgrade, and kube-reflexion does not edit chart values",
                    owner.describe()
                ),
                owner,
            },
            (_, Some(mut source), Some(controller)) => {
                match (&rec.revision, source.branch.is_empty()) {
                    (Some(rev), true) => match cfg.gitops.branch_of(&source.url, rev).await {
                        Ok(Some(branch)) => {
                            source.branch = branch;
                            Route::Git { source, controller }
                        }
                        Ok(None) => Route::Hand {
                            why: format!(
                                "{controller} tracks revision {rev:?}, not a branch kube-reflexion can commit to"
                            ),
                            owner,
                        },
                        Err(e) => Route::Hand {
                            why: format!("{controller}'s repository cannot be read: {e}"),
                            owner,
                        },
                    },
                    _ => Route::Git { source, controller },
                }
            }
            (_, _, _) => Route::Hand {
                why: rec.note.clone().unwrap_or_else(|| {
                    format!(
                        "{} has no Git source kube-reflexion can commit to",
                        owner.describe()
                    )
                }),
                owner,
            },
        };
        let source = match &route {
            Route::Git { source, .. } => Some(Source {
                url: reflexion_gitops::git::redact(&source.url),
                ..source.clone()
            }),
            _ => None,
        };
        let record = json!({
            "owner": rec.owner, "controller": rec.controller, "source": source, "note": rec.note,
            "fix_lands": route.lands(), "policy": mode,
        });
        self.inner.db.set_owner(&inc.id, &record).await?;
        tracing::info!(incident = %inc.id, workload = %target, owner = %rec.owner.describe(), lands = route.lands(), "owner of record");
        Ok((route, record))
    }
}
