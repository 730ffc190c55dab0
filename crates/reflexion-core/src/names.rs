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

/// A cluster's name as kube-reflexion knows it: a kubeconfig context name (`kind-dev`, an EKS context's ARN
/// `arn:aws:eks:eu-west-1:123456789012:cluster/prod`), 1-253 ASCII letters, digits and `-._:/@`.
pub fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':' | b'/' | b'@')
        })
}

/// A label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63 alphanumerics, '-', '_' or
/// '.', starting and ending alphanumeric (`disktype`, `kubernetes.io/hostname`).
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_label_value(name) && !name.is_empty()
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values() {
        for (s, key, value) in [
            ("disktype", true, true),
            ("kubernetes.io/hostname", true, false),
            ("node-role.kubernetes.io/control-plane", true, false),
            ("", false, true),
            ("nvme", true, true),
            ("a/b/c", false, false),
            ("-x", false, false),
            ("Bad Key", false, false),
            ("x_y.z", true, true),
        ] {
            assert_eq!((is_label_key(s), is_label_value(s)), (key, value), "{s:?}");
        }
    }

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
