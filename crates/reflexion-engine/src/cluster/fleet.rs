//! The clusters this API serves, by name. A report names its cluster (the watcher's `--cluster-name`); the engine
//! acts on that cluster only, under that cluster's policy. What is learned (strategies, values, lessons) is shared
//! by signature across all of them.

use super::Cluster;
use reflexion_core::policy::Policy;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One served cluster: its client and the policy its incidents are gated by.
#[derive(Clone)]
pub struct Member {
    pub cluster: Cluster,
    pub policy: Arc<Policy>,
}

/// At least one cluster, by name.
#[derive(Clone)]
pub struct Fleet {
    members: Arc<BTreeMap<String, Member>>,
    first: Member,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("this API serves no cluster named {asked:?} (it serves: {served})")]
    Unknown { asked: String, served: String },
    #[error(
        "the report names no cluster and this API serves several ({served}): set the watcher's --cluster-name"
    )]
    Unnamed { served: String },
}

impl Fleet {
    /// `None` when `members` is empty.
    pub fn new(members: BTreeMap<String, Member>) -> Option<Self> {
        let first = members.values().next()?.clone();
        Some(Self {
            members: Arc::new(members),
            first,
        })
    }

    /// The one cluster a single-cluster API serves.
    pub fn single(name: &str, cluster: Cluster, policy: Policy) -> Self {
        let first = Member {
            cluster: cluster.named(name),
            policy: Arc::new(policy),
        };
        Self {
            members: Arc::new(BTreeMap::from([(name.to_string(), first.clone())])),
            first,
        }
    }

    /// The first cluster by name.
    pub fn first(&self) -> &Member {
        &self.first
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn members(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The only cluster, when there is exactly one.
    pub fn only(&self) -> Option<(&str, &Member)> {
        let mut it = self.members();
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// The cluster a report belongs to: the one it names, or the only one when it names none.
    pub fn resolve(&self, asked: Option<&str>) -> Result<(&str, &Member), FleetError> {
        match asked {
            Some(name) => self
                .members
                .get_key_value(name)
                .map(|(k, m)| (k.as_str(), m))
                .ok_or_else(|| FleetError::Unknown {
                    asked: name.to_string(),
                    served: self.served(),
                }),
            None => self.only().ok_or_else(|| FleetError::Unnamed {
                served: self.served(),
            }),
        }
    }

    /// The cluster a stored incident belongs to. An incident stored before clusters were named ('') belongs to the
    /// only cluster of a single-cluster API.
    pub fn serving(&self, stored: &str) -> Option<&Member> {
        match stored {
            "" => self.only().map(|(_, m)| m),
            name => self.members.get(name),
        }
    }

    fn served(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(names: &[&str]) -> Option<Fleet> {
        // A client that is never used: resolution only looks at names.
        let config = kube::Config::new("http://127.0.0.1:1".parse().ok()?);
        let client = kube::Client::try_from(config).ok()?;
        Fleet::new(
            names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        Member {
                            cluster: Cluster::new(client.clone()).named(n),
                            policy: Arc::new(Policy::default()),
                        },
                    )
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn a_report_resolves_to_its_named_cluster_or_the_only_one() {
        let one = fleet(&["prod"]).unwrap_or_else(|| panic!("fleet"));
        let two = fleet(&["prod", "staging"]).unwrap_or_else(|| panic!("fleet"));
        type Case<'a> = (&'a Fleet, Option<&'a str>, Result<&'a str, FleetError>);
        let cases: Vec<Case> = vec![
            (&one, Some("prod"), Ok("prod")),
            (&one, None, Ok("prod")),
            (
                &one,
                Some("staging"),
                Err(FleetError::Unknown {
                    asked: "staging".into(),
                    served: "prod".into(),
                }),
            ),
            (&two, Some("staging"), Ok("staging")),
            (
                &two,
                None,
                Err(FleetError::Unnamed {
                    served: "prod, staging".into(),
                }),
            ),
            (
                &two,
                Some("Prod"),
                Err(FleetError::Unknown {
                    asked: "Prod".into(),
                    served: "prod, staging".into(),
                }),
            ),
        ];
        for (fleet, asked, want) in cases {
            let got = fleet.resolve(asked).map(|(n, m)| {
                assert_eq!(m.cluster.name(), n, "a member's client carries its name");
                n
            });
            assert_eq!(got, want, "{asked:?}");
        }
        let serving =
            |f: &Fleet, stored: &str| f.serving(stored).map(|m| m.cluster.name().to_string());
        assert_eq!(serving(&one, ""), Some("prod".into()));
        assert_eq!(serving(&two, ""), None);
        assert_eq!(serving(&two, "staging"), Some("staging".into()));
        assert_eq!(serving(&two, "dev"), None);
    }
}
