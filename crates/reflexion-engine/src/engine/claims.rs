//! Exactly one replica works an incident at a time. It claims the incident in the database before working it,
//! renews all of its claims together while it works, and stops — as if it had died — once it can no longer be sure
//! it still holds them. Every replica looks for incidents whose claim expired and resumes them the way a restart
//! does: a write that may have landed is read back, an incident that was executing or verifying is verified and
//! never acted on again.

use super::Engine;
use reflexion_core::IncidentState;
use std::time::{Duration, Instant};

/// Claims this replica holds and can still trust: renewed before this instant passes, else given up.
pub(super) struct Claims {
    valid_until: tokio::sync::watch::Sender<Instant>,
    /// Incidents queued or worked in this process, with how many tasks hold each: looking for expired claims, they
    /// are not this replica's to resume.
    held: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Claims {
    pub(super) fn new() -> Self {
        Self {
            valid_until: tokio::sync::watch::Sender::new(Instant::now()),
            held: Default::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold `id` if no task here does; whether it was free.
    pub(super) fn hold_new(&self, id: &str) -> bool {
        let mut held = self.held();
        if held.contains_key(id) {
            return false;
        }
        held.insert(id.to_string(), 1);
        true
    }

    /// Hold `id` besides any task that already does.
    pub(super) fn hold(&self, id: &str) {
        *self.held().entry(id.to_string()).or_default() += 1;
    }

    /// The incidents held now: the claims a live task of this process needs renewed.
    pub(super) fn ids(&self) -> Vec<String> {
        self.held().keys().cloned().collect()
    }

    pub(super) fn let_go(&self, id: &str) {
        let mut held = self.held();
        if let Some(n) = held.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                held.remove(id);
            }
        }
    }
}

impl Engine {
    /// The part of a claim's life this replica trusts it for: renewals run every third of it, and a claim is given
    /// up a sixth before the database would let another replica take it.
    fn trusted(&self) -> Duration {
        self.inner.config.claim_ttl * 5 / 6
    }

    /// Renew every claim of this replica; on success its claims are trusted for another `trusted()`.
    async fn renew(&self) -> bool {
        let started = Instant::now();
        let config = &self.inner.config;
        match self
            .inner
            .db
            .renew_claims(&config.replica, config.claim_ttl, &self.inner.claims.ids())
            .await
        {
            Ok(_) => {
                self.inner.claims.valid_until.send_if_modified(|v| {
                    let next = started + self.trusted();
                    (next > *v).then(|| *v = next).is_some()
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "claims not renewed");
                false
            }
        }
    }

    /// Resolves when this replica's claims can no longer be trusted.
    async fn claims_lost(&self) {
        let mut rx = self.inner.claims.valid_until.subscribe();
        loop {
            let until = *rx.borrow_and_update();
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Work the incident while this replica holds it, then let it go. Nothing is done when another replica holds
    /// it. When the claims cannot be renewed the work stops where it is, and whichever replica claims the incident
    /// next resumes it.
    pub(super) async fn claimed(&self, id: &str, work: impl Future<Output = ()>) {
        let (db, config) = (&self.inner.db, &self.inner.config);
        match db.claim(id, &config.replica, config.claim_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(incident = %id, "another replica works this incident");
                return;
            }
            Err(e) => {
                // Unclaimed, it is found again once idle.
                tracing::warn!(incident = %id, error = %e, "incident not claimed");
                return;
            }
        }
        if *self.inner.claims.valid_until.borrow() < Instant::now() + self.trusted() / 2 {
            self.renew().await;
        }
        tokio::select! {
            () = work => {}
            () = self.claims_lost() => {
                tracing::warn!(incident = %id, "stopped working the incident: this replica's claims could not be renewed");
                return;
            }
        }
        if let Err(e) = db.release(id, &config.replica).await {
            tracing::warn!(incident = %id, error = %e, "claim not released; it expires");
        }
    }

    /// Claim an incident awaiting approval for this replica. The replica that asked may hold it a moment longer,
    /// or have died holding it: wait for it, up to one claim's life. False when it is no longer awaiting approval
    /// or stays held.
    pub(super) async fn claim_patiently(&self, id: &str) -> Result<bool, crate::db::DbError> {
        let (db, config) = (&self.inner.db, &self.inner.config);
        let deadline = Instant::now() + config.claim_ttl + Duration::from_secs(1);
        loop {
            if db.claim(id, &config.replica, config.claim_ttl).await? {
                return Ok(true);
            }
            let waiting = db
                .incident(id)
                .await?
                .is_some_and(|i| i.state == IncidentState::AwaitingApproval);
            if !waiting || Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Say this replica is alive and take its part of the Kubernetes budget: the fleet's `--kube-qps` split evenly
    /// between the replicas alive. How many there are.
    pub(super) async fn announce(&self) -> Result<u32, crate::db::DbError> {
        let config = &self.inner.config;
        let replicas = self
            .inner
            .db
            .announce(&config.replica, config.claim_ttl)
            .await?;
        if replicas != config.kube_share.get() {
            tracing::info!(replicas, "replicas sharing the Kubernetes request budget");
        }
        config.kube_share.set(replicas);
        Ok(replicas)
    }

    /// This replica stops: the others take its part of the budget at once rather than after a claim's life.
    pub async fn retire(&self) {
        if let Err(e) = self.inner.db.retire(&self.inner.config.replica).await {
            tracing::warn!(error = %e, "not retired; the other replicas take this one's budget when it expires");
        }
    }

    /// Renew this replica's claims and look for incidents nobody works, until the process ends; and say it is
    /// alive, often enough (every 5 s at most) that a replica joining or leaving changes every one's budget soon.
    pub fn keep_claims(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            let every = (engine.inner.config.claim_ttl / 3)
                .clamp(Duration::from_millis(200), Duration::from_secs(5));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = engine.announce().await {
                    tracing::warn!(error = %e, "not announced; the Kubernetes budget's share stays as it was");
                }
            }
        });
        let engine = self.clone();
        tokio::spawn(async move {
            let every = (engine.inner.config.claim_ttl / 3).max(Duration::from_millis(200));
            loop {
                let renewed = engine.renew().await;
                if renewed
                    && let Err(e) = engine.adopt_unclaimed(engine.inner.config.claim_ttl).await
                {
                    tracing::warn!(error = %e, "looking for unclaimed incidents failed");
                }
                // A failed renewal is retried soon: the claims are still trusted for a while.
                tokio::time::sleep(if renewed {
                    every
                } else {
                    every.min(Duration::from_secs(1))
                })
                .await;
            }
        });
    }

    /// Queue every in-flight incident no replica works — its claim expired, it is this replica's own from before a
    /// restart, or it was never claimed and has not moved for `idle` — that this process does not hold already.
    pub(super) async fn adopt_unclaimed(
        &self,
        idle: Duration,
    ) -> Result<usize, crate::db::DbError> {
        let replica = &self.inner.config.replica;
        let mut n = 0;
        for (id, state, by) in self.inner.db.unclaimed(replica, idle).await? {
            if self.inner.claims.held().contains_key(&id) {
                continue;
            }
            match by.as_deref() {
                Some(r) if r != replica => {
                    tracing::info!(incident = %id, %state, from = r, "resuming an incident whose replica's claim expired")
                }
                _ => tracing::info!(incident = %id, %state, "resuming incident"),
            }
            n += 1;
            self.spawn(id);
        }
        Ok(n)
    }

    /// Take the incident up from where it stands. An incident that was executing or verifying is not acted on
    /// again: its change may already be in place, so it is read back and verified.
    pub(super) async fn take_up(&self, id: &str) {
        let state = match self.inner.db.incident(id).await {
            Ok(Some(inc)) => inc.state,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(incident = %id, error = %e, "incident not read");
                return;
            }
        };
        let worked = match state {
            IncidentState::Executing | IncidentState::Verifying => self.reverify(id, state).await,
            IncidentState::Reported => self.run(id).await,
            IncidentState::Diagnosing | IncidentState::Planning => self.run_again(id).await,
            // Finished, or waiting for a person.
            _ => Ok(()),
        };
        self.fail_on_error(id, worked).await;
    }

    /// An incident whose work stopped on an error ends failed, saying why.
    pub(super) async fn fail_on_error(&self, id: &str, worked: Result<(), super::EngineError>) {
        if let Err(e) = worked {
            // The database out of reach: nothing can be recorded now, and a "failed" written the moment it comes back
            // would end an incident that only waited. It stays where it is, and is taken up again (by any replica)
            // once its claim has been idle for the claim TTL.
            if let super::EngineError::Db(db) = &e
                && db.is_unreachable()
            {
                tracing::error!(incident = %id, error = %e, "incident interrupted: the database is out of reach; it is taken up again later");
                return;
            }
            // After a write (executing or verifying) the change may be live: it is never left failed and
            // unverified. The incident stays where it is, and is read back and verified (then kept or handed over)
            // when taken up again — by any replica, once its claim has been idle for the claim TTL.
            let state = self
                .inner
                .db
                .incident(id)
                .await
                .ok()
                .flatten()
                .map(|i| i.state);
            if matches!(
                state,
                Some(IncidentState::Executing | IncidentState::Verifying)
            ) && !matches!(e, super::EngineError::NotServed(_))
            {
                tracing::error!(incident = %id, error = %e, "incident interrupted after its write; it is read back and verified when taken up again");
                return;
            }
            tracing::error!(incident = %id, error = %e, "incident stopped by an error");
            let _ = self
                .inner
                .db
                .finish(id, IncidentState::Failed, &format!("internal error: {e}"))
                .await;
        }
    }

    /// An incident left diagnosing or planning: a slot its worker reserved and never used is settled (the write
    /// runs only after the incident is committed as executing), and it is diagnosed again.
    async fn run_again(&self, id: &str) -> Result<(), super::EngineError> {
        let db = &self.inner.db;
        if let Some((slot, _)) = db.unsettled_action(id).await? {
            db.settle_action(
                slot,
                "not run: the replica working it stopped before running it",
            )
            .await?;
        }
        self.run(id).await
    }
}

/// This process works (or waits to work) an incident: its claim is renewed and no other task of this process takes
/// it up. Let go when dropped — at the end of the work, on an error, on a panic's unwinding, or when an approval's
/// request is dropped.
pub(crate) struct Hold {
    engine: Engine,
    pub(super) id: String,
}

impl Hold {
    pub(super) fn new(engine: &Engine, id: &str) -> Self {
        engine.inner.claims.hold(id);
        Self::held(engine, id)
    }

    /// For an id held already (`Claims::hold_new`).
    pub(super) fn held(engine: &Engine, id: &str) -> Self {
        Self {
            engine: engine.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.engine.inner.claims.let_go(&self.id);
    }
}
