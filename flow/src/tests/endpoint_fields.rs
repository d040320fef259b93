//! For every endpoint field of `FlowFilter` (pods, services, labels,
//! identities, workloads, clusters, FQDNs): which sample flows it keeps.

use lumen_proto::flow::FlowFilter;

use super::*;

#[test]
fn source_and_destination_pod() {
    // No namespace means namespace "default", as in Hubble.
    keeps(
        FlowFilter {
            source_pod: strings(&["frontend"]),
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            source_pod: strings(&["default/front"]),
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            source_pod: strings(&["default/"]),
            ..Default::default()
        },
        &["tcp", "tcp_reply", "udp", "icmpv4", "drop", "http", "dns"],
    );
    keeps(
        FlowFilter {
            source_pod: strings(&["monitoring/prom"]),
            ..Default::default()
        },
        &["icmpv6"],
    );
    keeps(
        FlowFilter {
            source_pod: strings(&["kube-system/"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            destination_pod: strings(&["kube-system/coredns"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    // An empty namespace is any namespace; `/` (hubble's --all-namespaces)
    // is every flow whose source is a pod.
    keeps(
        FlowFilter {
            source_pod: strings(&["/"]),
            ..Default::default()
        },
        &["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6", "drop", "http", "dns"],
    );
    keeps(
        FlowFilter {
            destination_pod: strings(&["/coredns"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    // coredns lives in kube-system, not in the default namespace.
    keeps(
        FlowFilter {
            destination_pod: strings(&["coredns"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            destination_pod: strings(&["backend", "monitoring/"]),
            ..Default::default()
        },
        &["tcp", "drop"],
    );
    keeps(
        FlowFilter {
            destination_pod: strings(&["front"]),
            ..Default::default()
        },
        &["tcp_reply", "icmpv6", "http"],
    );
}

#[test]
fn source_and_destination_label() {
    keeps(
        FlowFilter {
            source_label: strings(&["app=frontend"]),
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            source_label: strings(&["k8s:app in (backend, prometheus)"]),
            ..Default::default()
        },
        &["tcp_reply", "icmpv6", "http"],
    );
    keeps(
        FlowFilter {
            source_label: strings(&["app=frontend,io.kubernetes.pod.namespace=kube-system"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            destination_label: strings(&["reserved:world"]),
            ..Default::default()
        },
        &["icmpv4"],
    );
    // No destination at all has no `app` label either.
    keeps(
        FlowFilter {
            destination_label: strings(&["!app"]),
            ..Default::default()
        },
        &["icmpv4", "empty"],
    );
    keeps(
        FlowFilter {
            destination_label: strings(&["k8s:io.kubernetes.pod.namespace=kube-system"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    keeps(
        FlowFilter {
            destination_label: strings(&["container:app=backend"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn node_labels() {
    keeps(
        FlowFilter {
            node_labels: strings(&["topology.kubernetes.io/zone=a"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    keeps(
        FlowFilter {
            node_labels: strings(&["topology.kubernetes.io/zone=b"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_identity() {
    keeps(
        FlowFilter {
            source_identity: vec![12345],
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            destination_identity: vec![2, 34567],
            ..Default::default()
        },
        &["udp", "icmpv4", "dns"],
    );
    keeps(
        FlowFilter {
            destination_identity: vec![1],
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_service() {
    keeps(
        FlowFilter {
            source_service: strings(&["kube-system/"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            destination_service: strings(&["kube-system/kube-"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    keeps(
        FlowFilter {
            destination_service: strings(&["kube-dns"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_fqdn() {
    keeps(
        FlowFilter {
            source_fqdn: strings(&["*"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            destination_fqdn: strings(&["*.google"]),
            ..Default::default()
        },
        &["icmpv4"],
    );
    keeps(
        FlowFilter {
            destination_fqdn: strings(&["DNS.google."]),
            ..Default::default()
        },
        &["icmpv4"],
    );
    keeps(
        FlowFilter {
            destination_fqdn: strings(&["*.example.com"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_workload() {
    let w = |name: &str, kind: &str| Workload {
        name: name.into(),
        kind: kind.into(),
    };
    keeps(
        FlowFilter {
            source_workload: vec![w("frontend", "")],
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            destination_workload: vec![w("", "Deployment")],
            ..Default::default()
        },
        &["tcp", "tcp_reply", "udp", "icmpv6", "drop", "http", "dns"],
    );
    keeps(
        FlowFilter {
            destination_workload: vec![w("backend", "StatefulSet")],
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_cluster_name() {
    keeps(
        FlowFilter {
            source_cluster_name: strings(&["east", "west"]),
            ..Default::default()
        },
        &["icmpv6"],
    );
    keeps(
        FlowFilter {
            destination_cluster_name: strings(&["east"]),
            ..Default::default()
        },
        &[],
    );
}
