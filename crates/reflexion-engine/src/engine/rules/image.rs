//! Bad image references: the tag the registry really has that the reference most likely meant; the repository is
//! never changed.

use crate::engine::{Engine, Plan, Planned};
use reflexion_core::image::ImageRef;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::strategy::PlanSource;
use reflexion_core::tags::{TagRule, choose_tag};
use reflexion_core::{Action, Cause, Failure, Signature};
use serde_json::Value;

impl Engine {
    /// The built-in rule for bad image references: ask the registry which tags exist and pick the one the
    /// reference was most likely meant to be. Never changes the repository.
    pub(in crate::engine) async fn plan_image(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        tried: &[Action],
    ) -> Planned {
        let image = match ImageRef::parse(&failure.image) {
            Ok(i) => i,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!(
                        "image reference {:?} of container {} cannot be parsed: {e}",
                        failure.image, failure.container
                    ),
                    suggestion: "correct the image reference in the workload spec".into(),
                };
            }
        };
        let signature = Signature::of(failure);
        if !matches!(signature.cause, Cause::NotFound | Cause::Unknown) {
            return Planned::Escalate {
                diagnosis: format!("pulling {} fails with {} ({}): {}", failure.image, failure.reason, signature.cause, failure.message),
                suggestion: "check the registry credentials (imagePullSecrets), the repository name and the registry's reachability".into(),
            };
        }
        let tags = match self.inner.registry.tags(&image).await {
            Ok(t) => t,
            Err(e) => {
                return Planned::Escalate {
                    diagnosis: format!("{e}; kube-reflexion never changes an image's repository"),
                    suggestion: format!(
                        "check that {} is the right repository and that the cluster can pull from it",
                        image.full_name()
                    ),
                };
            }
        };
        let intended = image.effective_tag().unwrap_or("latest");
        if tags.iter().any(|t| t == intended) {
            return Planned::Escalate {
                diagnosis: format!(
                    "tag {intended} exists in {}, yet the pull fails: {}",
                    image.full_name(),
                    failure.message
                ),
                suggestion: "check node-to-registry connectivity and pull credentials".into(),
            };
        }
        let Some(choice) = choose_tag(
            intended,
            &tags,
            &tried
                .iter()
                .filter_map(|a| match a {
                    Action::SetImage { image, .. } => ImageRef::parse(image).ok()?.tag,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ) else {
            return Planned::Escalate {
                diagnosis: format!(
                    "{} has no tag close to tag {intended} and no stable release tag left to try",
                    image.full_name()
                ),
                suggestion: "set the image tag by hand".into(),
            };
        };
        let new_image = image.with_tag(&choice.tag).to_string();
        let rationale = match choice.rule {
            TagRule::Closest { distance } => format!(
                "{} is {distance} edit(s) from tag {intended}, which does not exist in {}",
                choice.tag,
                image.full_name()
            ),
            TagRule::NewestStable => format!(
                "tag {intended} does not exist in {}; {} is its newest stable release",
                image.full_name(),
                choice.tag
            ),
            TagRule::Latest => format!(
                "tag {intended} does not exist in {} and it has no version tags; using latest",
                image.full_name()
            ),
        };
        // A bare pod's image changes in place like a workload's: the API allows it, and the pod keeps its uid.
        Planned::Plan(Box::new(Plan {
            action: Action::SetImage {
                target: target.clone(),
                container: failure.container.clone(),
                image: new_image,
            },
            source: PlanSource::Rules,
            rationale,
            template: "set_image:registry_tag".into(),
            description: "Set the container image on the owner (in place on a bare pod) to the registry tag it was most likely meant to run (closest existing tag, else newest stable)".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        }))
    }
}
