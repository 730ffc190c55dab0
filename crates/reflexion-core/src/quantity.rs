//! Memory quantities (`128Mi`, `500M`, `1Gi`) and the rule for raising a memory limit after an OOM kill.

const MI: u64 = 1024 * 1024;

/// Bytes in a Kubernetes quantity, or `None` if it does not parse (or is not a whole number of bytes).
pub fn parse_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => MI as f64,
        "Gi" => (1024 * MI) as f64,
        "Ti" => (1024 * 1024 * MI) as f64,
        _ => return None,
    };
    let bytes = value * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes.ceil() as u64)
}

/// Millicores in a CPU quantity (`500m`, `2`, `0.5`), or `None` if it does not parse.
pub fn parse_millicores(q: &str) -> Option<u64> {
    let q = q.trim();
    let (num, mult) = match q.strip_suffix('m') {
        Some(n) => (n, 1.0),
        None => (q, 1000.0),
    };
    let value: f64 = num.parse().ok()?;
    let m = value * mult;
    (0.0..1e15).contains(&m).then_some(m.ceil() as u64)
}

/// Millicores as the quantity an SRE would write (`250m`, `2`).
pub fn format_millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

/// Bytes as the quantity an SRE would write: whole `Gi` when exact, else `Mi` rounded up.
pub fn format_bytes(b: u64) -> String {
    if b >= 1024 * MI && b.is_multiple_of(1024 * MI) {
        format!("{}Gi", b / (1024 * MI))
    } else {
        format!("{}Mi", b.div_ceil(MI))
    }
}

/// The next memory limit to try after an OOM kill: the larger of twice the limit and the limit plus 256Mi, capped at
/// `ceiling`. `None` when the limit is already at the ceiling: raising memory further is not a safe automatic fix.
pub fn next_memory_limit(current: u64, ceiling: u64) -> Option<u64> {
    if current >= ceiling {
        return None;
    }
    let raised = current
        .saturating_mul(2)
        .max(current.saturating_add(256 * MI));
    Some(raised.min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (q, want) in [
            ("10Mi", Some(10 * MI)),
            ("500M", Some(500_000_000)),
            ("1Gi", Some(1024 * MI)),
            ("128974848", Some(128_974_848)),
            ("1.5Gi", Some(1536 * MI)),
            ("2x", None),
            ("", None),
            ("-1Mi", None),
        ] {
            assert_eq!(parse_bytes(q), want, "{q}");
        }
        assert_eq!(
            (
                format_bytes(266 * MI),
                format_bytes(2048 * MI),
                format_bytes(MI + 1)
            ),
            ("266Mi".into(), "2Gi".into(), "2Mi".into())
        );
    }

    #[test]
    fn cpu_quantities() {
        for (q, want) in [
            ("500m", Some(500)),
            ("2", Some(2000)),
            ("0.25", Some(250)),
            ("1.5", Some(1500)),
            ("m", None),
            ("-1", None),
            ("2Gi", None),
        ] {
            assert_eq!(parse_millicores(q), want, "{q}");
        }
        assert_eq!(
            (format_millicores(250), format_millicores(2000)),
            ("250m".into(), "2".into())
        );
    }

    #[test]
    fn memory_limits_rise_by_the_rule_and_stop_at_the_ceiling() {
        let ceiling = 2048 * MI;
        let cases = [
            // The seed's 10Mi: +256Mi beats doubling.
            (10 * MI, Some(266 * MI)),
            (128 * MI, Some(384 * MI)),
            // Doubling beats +256Mi above 256Mi.
            (300 * MI, Some(600 * MI)),
            (1536 * MI, Some(2048 * MI)),
            (2048 * MI, None),
            (4096 * MI, None),
        ];
        for (current, want) in cases {
            assert_eq!(
                next_memory_limit(current, ceiling),
                want,
                "{}",
                format_bytes(current)
            );
        }
        // Two raises take the seed's 10Mi past the 500M it uses.
        let twice = next_memory_limit(266 * MI, ceiling);
        assert!(twice.is_some_and(|b| b > 500_000_000));
    }
}
