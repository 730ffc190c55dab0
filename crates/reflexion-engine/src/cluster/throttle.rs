//! A client-side rate limit on the Kubernetes API, as client-go gives every controller (a token bucket: `qps`
//! requests a second on average, `burst` at once). A storm of distinct failures opens incidents faster than the
//! API server should be read for them; without it, the engine's diagnosis reads competed with the API server's own
//! work (and, on a laptop, with everything else) in proportion to the storm. Incidents wait their turn instead.
//! The budget is the fleet's: replicas sharing a database split it evenly (`Share`), so adding a replica does not
//! add load on the API server.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How many replicas share the budget (the replicas alive, as the database last said; 1 alone).
#[derive(Debug)]
pub struct Share(AtomicU32);

impl Share {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU32::new(1)))
    }

    pub fn set(&self, replicas: u32) {
        self.0.store(replicas.max(1), Ordering::Relaxed);
    }

    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }
}

/// The bucket, shared by every clone of the client.
#[derive(Debug)]
pub struct Throttle {
    qps: f64,
    burst: f64,
    share: Arc<Share>,
    /// Tokens left (below zero: requests already promised a later start) and when that was counted.
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// `qps` > 0 and `burst` ≥ 1 for the whole fleet, of which this replica takes its `share`; the bucket starts
    /// full.
    pub fn new(qps: f64, burst: u32, share: Arc<Share>) -> Arc<Self> {
        let burst = f64::from(burst.max(1));
        Arc::new(Self {
            qps: qps.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new((burst / f64::from(share.get()), Instant::now())),
            share,
        })
    }

    /// Take a token: how long to wait before the request may go (zero while the bucket has tokens).
    pub fn reserve(&self) -> Duration {
        let replicas = f64::from(self.share.get());
        // Never below one request at once, however many replicas: each can always send.
        let (qps, burst) = (self.qps / replicas, (self.burst / replicas).max(1.0));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, at) = *state;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * qps).min(burst) - 1.0;
        *state = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / qps)
        }
    }
}

/// Wraps the client's HTTP service: a request is sent only once it holds a token.
pub struct Layer(pub Arc<Throttle>);

impl<S> tower::Layer<S> for Layer {
    type Service = Throttled<S>;
    fn layer(&self, inner: S) -> Throttled<S> {
        Throttled {
            inner,
            throttle: self.0.clone(),
            wait: None,
            granted: false,
        }
    }
}

pub struct Throttled<S> {
    inner: S,
    throttle: Arc<Throttle>,
    wait: Option<Pin<Box<Sleep>>>,
    granted: bool,
}

impl<S, R> tower::Service<R> for Throttled<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.granted {
            if self.wait.is_none() {
                let wait = self.throttle.reserve();
                if wait.is_zero() {
                    self.granted = true;
                } else {
                    self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
            if let Some(sleep) = self.wait.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.wait = None;
                self.granted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.granted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_a_burst_through_then_paces_at_qps() {
        let t = Throttle::new(10.0, 3, Share::new());
        let waits: Vec<Duration> = (0..6).map(|_| t.reserve()).collect();
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200, 300]);
        // After a quiet second the bucket is full again, never fuller than the burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        let ms: Vec<u128> = (0..4).map(|_| t.reserve().as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn replicas_split_the_budget_and_each_keeps_one_request_at_once() {
        let share = Share::new();
        let t = Throttle::new(10.0, 4, share.clone());
        share.set(2);
        // Half the burst and half the rate: 2 at once, then one every 200 ms.
        let ms: Vec<u128> = (0..4).map(|_| t.reserve().as_millis()).collect();
        assert_eq!(ms, [0, 0, 200, 400]);
        // Eight replicas on a burst of 4: each still sends one at once, then paces at 10/8 a second.
        share.set(8);
        tokio::time::advance(Duration::from_secs(60)).await;
        let ms: Vec<u128> = (0..3).map(|_| t.reserve().as_millis()).collect();
        assert_eq!(ms, [0, 800, 1600]);
        // Alone again: the whole budget.
        share.set(0);
        assert_eq!(share.get(), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        let ms: Vec<u128> = (0..5).map(|_| t.reserve().as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_their_token_through_the_service() {
        use tower::{Layer as _, Service as _, ServiceExt};
        let svc =
            Layer(Throttle::new(2.0, 1, Share::new())).layer(tower::service_fn(|_: ()| async {
                Ok::<_, std::convert::Infallible>(Instant::now())
            }));
        let (start, mut svc, mut sent) = (Instant::now(), svc, Vec::new());
        for _ in 0..3 {
            let Ok(ready) = svc.ready().await;
            let Ok(at) = ready.call(()).await;
            sent.push(at.duration_since(start).as_millis());
        }
        assert_eq!(sent, [0, 500, 1000]);
    }
}
