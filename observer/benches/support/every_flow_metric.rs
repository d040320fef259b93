//! The metrics configuration of the metrics benchmarks and the Prometheus
//! test: every flow metric Lumen counts, each split by source and
//! destination pod (Hubble's `--metrics` grammar).

/// Every flow metric, each split by source and destination pod.
pub const EVERY_FLOW_METRIC: &str = "\
flow:sourceContext=pod;destinationContext=pod \
drop:sourceContext=pod;destinationContext=pod \
tcp:sourceContext=pod;destinationContext=pod \
port-distribution:sourceContext=pod;destinationContext=pod \
icmp:sourceContext=pod;destinationContext=pod \
flows-to-world:any-drop;port;sourceContext=pod;destinationContext=pod \
policy:sourceContext=pod;destinationContext=pod";
