//! Strategy statistics: a strategy is an action template learned for a signature class, scored by its verified
//! outcomes with a Beta(1, 1) prior.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a plan came from; a strategy keeps the source that taught it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanSource {
    /// The built-in rules.
    Rules,
    /// A value a verified fix used before, reused without asking anyone.
    Learned,
    /// The model chose the action (our code checked and compiled it).
    Llm,
}

impl PlanSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanSource::Rules => "rules",
            PlanSource::Learned => "learned",
            PlanSource::Llm => "llm",
        }
    }
}

impl fmt::Display for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Posterior mean of the success probability: (s + 1) / (s + f + 2). An untried strategy scores 0.5.
pub fn confidence(successes: u64, failures: u64) -> f64 {
    (successes as f64 + 1.0) / ((successes + failures) as f64 + 2.0)
}

/// Observed success rate; 0 when the strategy has never been verified either way.
pub fn success_rate(successes: u64, failures: u64) -> f64 {
    let n = successes + failures;
    if n == 0 {
        0.0
    } else {
        successes as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores() {
        for (s, f, conf, rate) in [
            (0, 0, 0.5, 0.0),
            (1, 0, 2.0 / 3.0, 1.0),
            (3, 1, 4.0 / 6.0, 0.75),
            (0, 2, 0.25, 0.0),
        ] {
            assert!((confidence(s, f) - conf).abs() < 1e-12, "{s} {f}");
            assert!((success_rate(s, f) - rate).abs() < 1e-12, "{s} {f}");
        }
    }
}

/// Verified outcomes of one candidate strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub successes: u64,
    pub failures: u64,
}

/// Draw from Beta(s + 1, f + 1): for whole-number shapes it is the (s + 1)-th smallest of s + f + 1 uniforms.
/// Counts are scaled down to at most 1,000 draws, which keeps the posterior's mean and most of its shape.
fn sample_beta(r: Record, rng: &mut impl rand::Rng) -> f64 {
    let (mut s, mut f) = (r.successes, r.failures);
    let n = s + f;
    if n > 999 {
        s = s * 999 / n;
        f = f * 999 / n;
    }
    let mut u: Vec<f64> = (0..=s + f).map(|_| rng.random::<f64>()).collect();
    u.sort_by(f64::total_cmp);
    u[s as usize]
}

/// Which candidate to try: with probability `exploration` any of them uniformly (so untried ideas keep being
/// tried), otherwise Thompson sampling over their posteriors. `None` for no candidates.
pub fn choose(candidates: &[Record], exploration: f64, rng: &mut impl rand::Rng) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    if rng.random::<f64>() < exploration.clamp(0.0, 1.0) {
        return Some(rng.random_range(0..candidates.len()));
    }
    candidates
        .iter()
        .map(|c| sample_beta(*c, rng))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod selection_tests {
    use super::*;
    use rand::SeedableRng;

    fn picks(candidates: &[Record], exploration: f64, draws: usize) -> Vec<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut count = vec![0; candidates.len()];
        for _ in 0..draws {
            if let Some(i) = choose(candidates, exploration, &mut rng) {
                count[i] += 1;
            }
        }
        count
    }

    #[test]
    fn exploits_what_worked_and_keeps_exploring() {
        let good = Record {
            successes: 12,
            failures: 0,
        };
        let bad = Record {
            successes: 0,
            failures: 12,
        };
        let untried = Record {
            successes: 0,
            failures: 0,
        };
        // Without exploration the proven strategy wins nearly always.
        let c = picks(&[bad, good], 0.0, 1000);
        assert!(c[1] > 990, "{c:?}");
        // With the default 0.2, about 10 % of draws still go to the other one (half of the 20 % explored).
        let c = picks(&[bad, good], 0.2, 1000);
        assert!((60..=150).contains(&c[0]), "{c:?}");
        // An untried strategy is sampled from a uniform posterior: it beats a bad one most of the time.
        let c = picks(&[bad, untried], 0.0, 1000);
        assert!(c[1] > 900, "{c:?}");
        assert_eq!(
            choose(&[], 0.2, &mut rand::rngs::StdRng::seed_from_u64(1)),
            None
        );
    }

    #[test]
    fn posterior_samples_have_the_right_mean_even_for_large_counts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for r in [
            Record {
                successes: 3,
                failures: 1,
            },
            Record {
                successes: 30_000,
                failures: 10_000,
            },
        ] {
            let mean: f64 = (0..2000).map(|_| sample_beta(r, &mut rng)).sum::<f64>() / 2000.0;
            assert!(
                (mean - confidence(r.successes, r.failures)).abs() < 0.03,
                "{r:?}: {mean}"
            );
        }
    }

    #[test]
    fn plan_sources_are_stored_by_their_names() {
        for s in [PlanSource::Rules, PlanSource::Learned, PlanSource::Llm] {
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
    }
}
