//! The kube-reflexion domain, with no I/O: an incident's states and moves ([`incident`]), what a failing pod is
//! ([`classify`]), what the LLM may choose from ([`choices`]), how failures are grouped
//! ([`signature`]), what the watcher sends ([`report`]), which fixes exist ([`action`]), which of them may run
//! ([`policy`]), how image references and registry tags are reasoned about ([`image`], [`tags`]), what a trial
//! teaches ([`reflect`]), whether a change made progress ([`progress`]) and how strategies are scored ([`strategy`]).

pub mod action;
pub mod alert;
pub mod choices;
pub mod classify;
pub mod gitops;
pub mod image;
pub mod incident;
pub mod llm;
pub mod logs;
pub mod names;
pub mod owner;
pub mod policy;
pub mod progress;
pub mod quantity;
pub mod rbac;
pub mod reflect;
pub mod refusal;
pub mod report;
pub mod revision;
pub mod service;
pub mod signature;
pub mod stalled;
pub mod strategy;
pub mod tags;

pub use action::{Action, ActionError, EnvSource, ProbeHandler, ProbeKind, Risk};
pub use classify::{Failure, FailureKind, classify};
pub use incident::IncidentState;
pub use owner::{WorkloadKind, WorkloadRef};
pub use signature::{Cause, Signature};
