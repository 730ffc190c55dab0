//! Kubernetes object-name rules (DNS-1123), as the API server applies them.

/// A DNS-1123 label: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric
/// (container names, namespaces).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated labels (most object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123() {
        for (s, label, subdomain) in [
            ("web", true, true),
            ("test-nginx", true, true),
            ("web-7d9c-x2x", true, true),
            ("a.b", false, true),
            ("", false, false),
            ("-web", false, false),
            ("web-", false, false),
            ("Web", false, false),
            ("we_b", false, false),
            ("a..b", false, false),
        ] {
            assert_eq!(
                (is_dns1123_label(s), is_dns1123_subdomain(s)),
                (label, subdomain),
                "{s:?}"
            );
        }
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain(&format!(
            "{}.{}",
            "a".repeat(63),
            "b".repeat(63)
        )));
        assert!(!is_dns1123_subdomain(&"a.".repeat(127)));
    }
}
