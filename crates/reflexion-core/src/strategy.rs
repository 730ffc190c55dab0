//! Strategy statistics: a strategy is an action template learned for a signature class, scored by its verified
//! outcomes with a Beta(1, 1) prior.

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
