//! Kubernetes resource quantities (`128Mi`, `500M`, `1.5Gi`, `250m`, `2`), as the API server parses them.

/// A quantity in base units (bytes for memory, cores for cpu), or `None` if it does not parse.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // A bare exponent (`1e3`) is a number, not a suffix.
    let (num, suffix) = if suffix.starts_with(['e', 'E']) && suffix[1..].parse::<i32>().is_ok() {
        (q, "")
    } else {
        (num, suffix)
    };
    let value: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then_some(value * mult)
}

/// Bytes as a kubectl-style quantity (`256Mi`).
pub fn format_bytes(b: f64) -> String {
    const MI: f64 = 1024.0 * 1024.0;
    if b >= 1024.0 * MI && (b / (1024.0 * MI)).fract() == 0.0 {
        format!("{}Gi", b / (1024.0 * MI))
    } else {
        format!("{}Mi", (b / MI).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for (q, want) in [
            ("10Mi", Some(10.0 * 1024.0 * 1024.0)),
            ("500M", Some(500e6)),
            ("1Gi", Some(1024.0 * 1024.0 * 1024.0)),
            ("1.5Gi", Some(1.5 * 1024.0 * 1024.0 * 1024.0)),
            ("250m", Some(0.25)),
            ("2", Some(2.0)),
            ("128974848", Some(128974848.0)),
            ("1e3", Some(1000.0)),
            ("12Zi", None),
            ("", None),
            ("-1Mi", None),
        ] {
            assert_eq!(parse(q), want, "{q}");
        }
        assert_eq!(format_bytes(256.0 * 1024.0 * 1024.0), "256Mi");
        assert_eq!(format_bytes(2.0 * 1024.0 * 1024.0 * 1024.0), "2Gi");
    }
}
