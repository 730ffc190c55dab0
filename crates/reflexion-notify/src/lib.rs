//! Notifications: the transitions of an incident a person must see — a fix awaiting approval, an escalation, a
//! resolution that took more than one trial (or a person's approval), a revert — sent to Slack incoming webhooks
//! (`slack`) and generic JSON webhooks signed with a shared secret (`sign`).
//!
//! Nothing here blocks the engine: the engine only writes transitions and the audit log; `deliver` reads them,
//! stores one notification per event per target in the store's outbox, and sends them with back-off. A restart
//! resumes from the outbox and each target's cursor, so none is lost and none is stored twice.

mod deliver;
pub mod notice;
pub mod sign;
pub mod slack;
pub mod target;

pub use deliver::{Notifier, Settings};
pub use notice::{Event, Notice};
pub use target::{Kind, Target, TargetError};
