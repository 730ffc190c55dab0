//! An incident's life as a state machine: the states it can be in and the moves between them. The store refuses
//! any other move, and moves by compare-and-set, so two writers can never both move one incident.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Reported,
    Diagnosing,
    Planning,
    AwaitingApproval,
    Executing,
    Verifying,
    Resolved,
    Escalated,
    Failed,
    Dismissed,
}

use IncidentState::*;

impl IncidentState {
    pub const ALL: [IncidentState; 10] = [
        Reported,
        Diagnosing,
        Planning,
        AwaitingApproval,
        Executing,
        Verifying,
        Resolved,
        Escalated,
        Failed,
        Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reported => "reported",
            Diagnosing => "diagnosing",
            Planning => "planning",
            AwaitingApproval => "awaiting_approval",
            Executing => "executing",
            Verifying => "verifying",
            Resolved => "resolved",
            Escalated => "escalated",
            Failed => "failed",
            Dismissed => "dismissed",
        }
    }

    /// Nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(self, Resolved | Escalated | Failed | Dismissed)
    }

    /// Still worked on, or waiting for a person: the workload's one open incident.
    pub fn is_open(self) -> bool {
        !self.is_final()
    }

    /// An engine works on it (a restart must pick it up again); an incident awaiting approval waits for a person.
    pub fn in_flight(self) -> bool {
        self.is_open() && self != AwaitingApproval
    }

    /// Finished by a decision about the workload (fixed or handed over, or the engine failed), as opposed to
    /// dismissed because there was nothing to fix: what success rates are computed over.
    pub fn is_decided(self) -> bool {
        matches!(self, Resolved | Escalated | Failed)
    }

    /// Whether an incident in this state may move to `next`.
    pub fn can_move_to(self, next: IncidentState) -> bool {
        if self.is_final() {
            return false;
        }
        // Handing over and failing are possible from anywhere the engine or an operator works.
        if matches!(next, Escalated | Failed) {
            return true;
        }
        match (self, next) {
            // Diagnosis again after a restart interrupted the first look or the planning.
            (Reported | Diagnosing | Planning, Diagnosing) => true,
            // Nothing (left) to fix: seen at the first look, or when an approved plan is about to run.
            (Reported | Diagnosing | Planning, Dismissed) => true,
            // Planning the first trial; the next trial after one that did not hold; an operator's approval.
            (Diagnosing | Verifying | AwaitingApproval, Planning) => true,
            (Planning, AwaitingApproval | Executing) => true,
            (Executing, Verifying) => true,
            // A restart interrupted execution and the write, read back, never landed: look again.
            (Executing, Diagnosing) => true,
            // A write whose outcome is unknown (a lost answer, a recreation not finished) is read back first.
            (Executing, Executing) => true,
            // Verifying again after a restart interrupted execution or verification.
            (Verifying, Verifying) => true,
            (Verifying, Resolved) => true,
            _ => false,
        }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an incident state")]
pub struct UnknownState(pub String);

impl FromStr for IncidentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl TryFrom<String> for IncidentState {
    type Error = UnknownState;

    fn try_from(s: String) -> Result<Self, UnknownState> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in IncidentState::ALL {
            assert_eq!(s.as_str().parse::<IncidentState>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert!("fixed".parse::<IncidentState>().is_err());
    }

    #[test]
    fn the_moves_an_incident_may_make() {
        let allowed = [
            (Reported, Diagnosing),
            (Reported, Dismissed),
            (Diagnosing, Planning),
            (Diagnosing, Dismissed),
            (Planning, Dismissed),
            (Diagnosing, Escalated),
            (Planning, AwaitingApproval),
            (Planning, Executing),
            (Planning, Escalated),
            (AwaitingApproval, Planning),
            (AwaitingApproval, Escalated),
            (Executing, Verifying),
            (Executing, Diagnosing),
            (Executing, Executing),
            (Executing, Escalated),
            (Verifying, Resolved),
            (Verifying, Planning),
            (Verifying, Verifying),
            (Planning, Diagnosing),
            (Executing, Failed),
        ];
        for from in IncidentState::ALL {
            for to in IncidentState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to))
                        || (from.is_open() && matches!(to, Escalated | Failed))
                        || (from == Diagnosing && to == Diagnosing),
                    "{from} -> {to}"
                );
            }
        }
        // Nothing leaves a final state, and nothing is resolved without being verified.
        for s in [Resolved, Escalated, Failed, Dismissed] {
            assert!(IncidentState::ALL.iter().all(|t| !s.can_move_to(*t)), "{s}");
        }
        assert!(
            IncidentState::ALL
                .iter()
                .filter(|s| s.can_move_to(Resolved))
                .eq([Verifying].iter())
        );
        assert!(!AwaitingApproval.in_flight() && Verifying.in_flight() && !Dismissed.is_decided());
    }
}
