//! Simulated time: every delay the kubelet and controllers wait is divided by the time scale.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    /// `scale` > 1 speeds the simulation up; values are clamped to [0.01, 1000].
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() {
            scale.clamp(0.01, 1000.0)
        } else {
            1.0
        };
        Self { scale }
    }

    /// A simulated duration, in real time.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.scale)
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(1.0)
    }
}
