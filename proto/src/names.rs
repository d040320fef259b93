//! Cilium's names for numbers the schema carries as plain integers: pure
//! constant tables, here because this is the one crate that the filters
//! (`lumen-flow`), the policy model (`lumen-policy`) and the CLI all
//! depend on. No logic.

/// Cilium's reserved security identities (`pkg/identity/numericidentity.go`)
/// that Lumen allocates, by number: the name is the `reserved:` label's key,
/// the entity's name where there is one, what Hubble prints for the
/// identity and what `hubble observe --identity` takes.
pub const RESERVED_IDENTITIES: [(u32, &str); 10] = [
    (1, "host"),
    (2, "world"),
    (3, "unmanaged"),
    (4, "health"),
    (5, "init"),
    (6, "remote-node"),
    (7, "kube-apiserver"),
    (8, "ingress"),
    (9, "world-ipv4"),
    (10, "world-ipv6"),
];

/// Reserved identity 11, which Lumen never allocates (nor names in its
/// output) but `hubble observe --identity` takes by name.
pub const OVERLAY_TO_ENCRYPT: (u32, &str) = (11, "overlay-to-encrypt");
