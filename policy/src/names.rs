//! Kubernetes name syntax (object names, namespaces, label keys and
//! values), checked the way the API server does: shared by policy parsing
//! and the observer's endpoint files.

/// A DNS-1123 label (namespaces): 1-63 lowercase letters, digits and '-',
/// starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (object names, label key prefixes): at most 253
/// characters, dot-separated parts each lowercase letters, digits and '-',
/// starting and ending with a letter or digit.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain, the name 1-63
/// letters, digits, '-', '_' and '.', starting and ending alphanumeric.
pub fn label_key(key: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("invalid label key \"{key}\": {why}"));
    let name = match key.split_once('/') {
        None => key,
        Some((_, name)) if name.contains('/') => return invalid("at most one '/' (prefix/name)"),
        Some((prefix, _)) if !is_dns_subdomain(prefix) => {
            return invalid("the prefix must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)")
        }
        Some((_, name)) => name,
    };
    if name.is_empty() || !is_label_text(name) {
        return invalid(
            "the name must be 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// A label value: empty, or like a label key's name.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_text(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value \"{value}\": at most 63 letters, digits, '-', '_' and '.', starting and ending \
             with a letter or digit (or empty)"
        ))
    }
}

fn is_label_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    s.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("allow-web.v2"));
        assert!(!is_dns_subdomain("Allow"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(is_dns_label("kube-system"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "io.kubernetes.pod.namespace",
            "A_b-c.D",
        ] {
            assert_eq!(label_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "-app",
            "app-",
            "/app",
            "x/",
            "a/b/c",
            "Example.com/app",
            &"a".repeat(64),
        ] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        assert_eq!(
            label_key("a/b/c"),
            Err("invalid label key \"a/b/c\": at most one '/' (prefix/name)".into())
        );
        assert_eq!(label_value(""), Ok(()));
        assert_eq!(label_value("v1.2_x"), Ok(()));
        assert!(label_value("a b").is_err());
        assert!(label_value(&"a".repeat(64)).is_err());
    }
}
