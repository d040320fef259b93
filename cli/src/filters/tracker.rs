//! The filters one list of flags builds (the allow list, or the deny list
//! of the flags after `--not`), the way `hubble observe` builds them:
//!
//! * every flag goes into the same filter (AND);
//! * a both-direction flag (`--pod x`) splits the list into a "source" and
//!   a "destination" filter (`source_pod=x` OR `destination_pod=x`), and
//!   every other flag is added to both;
//! * namespaces (`--namespace`, `-A` and their `--from-`/`--to-` forms) are
//!   applied last, to the pod and service names of the filters: `--pod web
//!   -n shop` is `shop/web`, `-n shop` alone every pod of `shop`;
//! * some flags cannot be used together in one list, and namespaces must
//!   agree with the namespaces pods and services name.

use lumen_proto::flow::FlowFilter;

/// Which end of a flow a direction-aware flag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `--pod`: either end (the source filter or the destination filter).
    Either,
    /// `--from-pod`.
    From,
    /// `--to-pod`.
    To,
}

/// Flags `hubble observe` refuses to combine in one list: each group's
/// flags exclude each other (a group of one excludes nothing).
const CONFLICTS: &[&[&str]] = &[
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace", "all-namespaces"],
    &["from-pod", "namespace", "all-namespaces"],
    &["to-service", "namespace", "all-namespaces"],
    &["from-service", "namespace", "all-namespaces"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
    &["encrypted", "unencrypted"],
];

/// Up to two filters: `left` gets the source side of both-direction flags,
/// `right` the destination side, and all other flags go to both.
#[derive(Debug, Default)]
pub struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    /// Namespaces of either end, of the source, of the destination (`""`:
    /// any namespace).
    namespaces: Vec<String>,
    from_namespaces: Vec<String>,
    to_namespaces: Vec<String>,
    /// The flags used in this list, in order of first use.
    used: Vec<&'static str>,
}

fn namespace_of(name: &str) -> Option<&str> {
    name.split_once('/').map(|(ns, _)| ns)
}

/// Each of `names` that says its namespace must be in one of `namespaces`.
fn check_namespaces(namespaces: &[String], names: &[String]) -> Result<(), String> {
    for ns in namespaces {
        for name in names {
            if namespace_of(name).is_some_and(|n| !n.is_empty() && n != ns) {
                return Err(format!("namespace {ns:?} does not contain {name:?}"));
            }
        }
    }
    Ok(())
}

/// A service filter next to a pod filter that names a namespace must be in
/// that namespace.
fn check_pods_and_services(pods: &[String], services: &[String]) -> Result<(), String> {
    for pod in pods {
        let Some(ns) = namespace_of(pod).filter(|n| !n.is_empty()) else {
            continue;
        };
        if let Some(service) = services.iter().find(|s| namespace_of(s) != Some(ns)) {
            return Err(format!("service {service:?} is not in the namespace of pod {pod:?}"));
        }
    }
    Ok(())
}

/// `names` with every name that has no namespace put in each of
/// `namespaces`.
fn in_namespaces(names: Vec<String>, namespaces: &[String]) -> Vec<String> {
    if namespaces.is_empty() || names.is_empty() {
        return names;
    }
    let mut out = Vec::new();
    for name in names {
        if name.contains('/') {
            out.push(name);
        } else {
            out.extend(namespaces.iter().map(|ns| format!("{ns}/{name}")));
        }
    }
    out
}

/// Puts the source (`source` true) or destination pods and services of `f`
/// into `namespaces`; without any, every pod of them.
fn apply_namespaces(f: &mut FlowFilter, namespaces: &[String], source: bool) {
    let (pods, services) = match source {
        true => (&mut f.source_pod, &mut f.source_service),
        false => (&mut f.destination_pod, &mut f.destination_service),
    };
    if pods.is_empty() && services.is_empty() {
        pods.push(String::new());
    }
    *pods = in_namespaces(std::mem::take(pods), namespaces);
    *services = in_namespaces(std::mem::take(services), namespaces);
}

impl Tracker {
    /// Notes that flag `name` is used in this list; an error if an earlier
    /// flag of the list cannot be combined with it.
    pub fn use_flag(&mut self, name: &'static str) -> Result<(), String> {
        if !self.used.contains(&name) {
            self.used.push(name);
        }
        for group in CONFLICTS {
            let mut used = group.iter().filter(|f| self.used.contains(f));
            if let (Some(first), Some(second)) = (used.next(), used.next()) {
                return Err(format!("filters --{first} and --{second} cannot be combined"));
            }
        }
        Ok(())
    }

    /// Sets a field the same way in both filters.
    pub fn all(&mut self, set: impl Fn(&mut FlowFilter)) {
        set(self.left.get_or_insert_with(FlowFilter::default));
        set(self.right.get_or_insert_with(FlowFilter::default));
    }

    /// Sets a direction-aware field; `set`'s flag says whether it is the
    /// source one.
    pub fn side(&mut self, dir: Dir, set: impl Fn(&mut FlowFilter, bool)) {
        let (left, right) = match dir {
            Dir::Either => (true, false),
            Dir::From => (true, true),
            Dir::To => (false, false),
        };
        set(self.left.get_or_insert_with(FlowFilter::default), left);
        set(self.right.get_or_insert_with(FlowFilter::default), right);
    }

    /// A namespace of pods and services (`""`: any), applied when the
    /// filters are built.
    pub fn namespace(&mut self, dir: Dir, namespace: &str) {
        let list = match dir {
            Dir::Either => &mut self.namespaces,
            Dir::From => &mut self.from_namespaces,
            Dir::To => &mut self.to_namespaces,
        };
        list.push(namespace.to_string());
    }

    /// Whether the namespaces given agree with the pods and services named.
    pub fn check(&self) -> Result<(), String> {
        for f in self.left.iter().chain(&self.right) {
            check_namespaces(&self.namespaces, &f.source_pod)?;
            check_namespaces(&self.namespaces, &f.source_service)?;
            check_namespaces(&self.namespaces, &f.destination_pod)?;
            check_namespaces(&self.namespaces, &f.destination_service)?;
            check_namespaces(&self.from_namespaces, &f.source_pod)?;
            check_namespaces(&self.from_namespaces, &f.source_service)?;
            check_namespaces(&self.to_namespaces, &f.destination_pod)?;
            check_namespaces(&self.to_namespaces, &f.destination_service)?;
            check_pods_and_services(&f.source_pod, &f.source_service)?;
            check_pods_and_services(&f.destination_pod, &f.destination_service)?;
        }
        Ok(())
    }

    /// The list's filters: none, one, or a source and a destination filter.
    pub fn filters(self) -> Vec<FlowFilter> {
        let no_namespaces =
            self.namespaces.is_empty() && self.from_namespaces.is_empty() && self.to_namespaces.is_empty();
        if self.left.is_none() && self.right.is_none() && no_namespaces {
            return Vec::new();
        }
        let mut left = self.left.unwrap_or_default();
        let mut right = self.right.unwrap_or_default();
        if !self.to_namespaces.is_empty() {
            apply_namespaces(&mut left, &self.to_namespaces, false);
            apply_namespaces(&mut right, &self.to_namespaces, false);
        }
        if !self.from_namespaces.is_empty() {
            apply_namespaces(&mut left, &self.from_namespaces, true);
            apply_namespaces(&mut right, &self.from_namespaces, true);
        }
        if !self.namespaces.is_empty() {
            apply_namespaces(&mut left, &self.namespaces, true);
            apply_namespaces(&mut right, &self.namespaces, false);
        }
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}
