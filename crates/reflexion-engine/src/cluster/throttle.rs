//! A client-side rate limit on the Kubernetes API, as client-go gives every controller (a token bucket: `qps`
//! requests a second on average, `burst` at once). A storm of distinct failures opens incidents faster than the
//! API server should be read for them; without it, the engine's diagnosis reads competed with the API server's own
//! work (and, on a laptop, with everything else) in proportion to the storm. Incidents wait their turn instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The bucket, shared by every clone of the client.
#[derive(Debug)]
pub struct Throttle {
    qps: f64,
    burst: f64,
    /// Tokens left (below zero: requests already promised a later start) and when that was counted.
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// `qps` > 0 and `burst` ≥ 1; the bucket starts full.
    pub fn new(qps: f64, burst: u32) -> Arc<Self> {
        let burst = f64::from(burst.max(1));
        Arc::new(Self {
            qps: qps.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new((burst, Instant::now())),
        })
    }

    /// Take a token: how long to wait before the request may go (zero while the bucket has tokens).
    pub fn reserve(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, at) = *state;
        let tokens =
            (tokens + now.duration_since(at).as_secs_f64() * self.qps).min(self.burst) - 1.0;
        *state = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.qps)
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
        let t = Throttle::new(10.0, 3);
        let waits: Vec<Duration> = (0..6).map(|_| t.reserve()).collect();
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200, 300]);
        // After a quiet second the bucket is full again, never fuller than the burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        let ms: Vec<u128> = (0..4).map(|_| t.reserve().as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_their_token_through_the_service() {
        use tower::{Layer as _, Service as _, ServiceExt};
        let svc = Layer(Throttle::new(2.0, 1)).layer(tower::service_fn(|_: ()| async {
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
