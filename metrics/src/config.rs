//! The two ways Hubble configures its flow metrics, read into one
//! [`MetricsConfig`]:
//!
//! * the `--metrics` string (Hubble's `--hubble-metrics` as Cilium's Helm
//!   chart writes it): metrics separated by white space, each
//!   `name[:option[=value];option[=value]…]`, a value being one or more
//!   items separated by `|` (context fallbacks) or `,` (labels);
//! * the dynamic YAML file (Hubble's `hubble-metrics-config`): a `metrics:`
//!   list of `name`, `contextOptions` (`name` and `values`),
//!   `includeFilters` and `excludeFilters` (Hubble `FlowFilter`s, with
//!   proto or JSON field names).
//!
//! Reading checks only the syntax; [`crate::Registry::configure`] checks
//! names and options.

use lumen_proto::flow::FlowFilter;
use serde::Deserialize;

use crate::ConfigError;

/// Every metric to keep, with its options and filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsConfig {
    pub metrics: Vec<MetricConfig>,
}

/// One metric: Hubble's `MetricConfig`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricConfig {
    pub name: String,
    pub context_options: Vec<ContextOption>,
    /// Flows counted: those any of these match (all if none is given)…
    pub include_filters: Vec<FlowFilter>,
    /// …and none of these.
    pub exclude_filters: Vec<FlowFilter>,
}

/// One option of a metric, `name=value|value` in the string form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextOption {
    pub name: String,
    /// Empty for an option without a value (`any-drop`).
    #[serde(default)]
    pub values: Vec<String>,
}

impl MetricsConfig {
    /// Reads the `--metrics` string form.
    pub fn parse_flag(text: &str) -> MetricsConfig {
        let metrics = text
            .split_whitespace()
            .map(|item| {
                let (name, options) = item.split_once(':').unwrap_or((item, ""));
                MetricConfig {
                    name: name.to_string(),
                    context_options: options.split(';').filter(|o| !o.is_empty()).map(parse_option).collect(),
                    ..Default::default()
                }
            })
            .collect();
        MetricsConfig { metrics }
    }

    /// Reads the dynamic YAML file form. Unlike Hubble, an unknown key is
    /// an error rather than ignored, so that a misspelt `excludeFilter`
    /// does not silently count everything.
    pub fn parse_yaml(text: &str) -> Result<MetricsConfig, ConfigError> {
        let raw: Option<RawConfig> = serde_yaml_ng::from_str(text)?;
        let mut metrics = Vec::new();
        for (i, m) in raw.and_then(|r| r.metrics).unwrap_or_default().into_iter().enumerate() {
            let name = m
                .name
                .filter(|n| !n.is_empty())
                .ok_or(ConfigError::MissingName { number: i + 1 })?;
            let include_filters = filters(&name, "includeFilters", m.include_filters)?;
            let exclude_filters = filters(&name, "excludeFilters", m.exclude_filters)?;
            let context_options = m
                .context_options
                .unwrap_or_default()
                .into_iter()
                .map(|o| ContextOption {
                    values: o.values.into_iter().filter(|v| !v.is_empty()).collect(),
                    ..o
                })
                .collect();
            metrics.push(MetricConfig {
                name,
                context_options,
                include_filters,
                exclude_filters,
            });
        }
        Ok(MetricsConfig { metrics })
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}

/// `key`, `key=a|b` or `key=a,b`: Hubble splits a value at `|` if it has
/// one, at `,` otherwise.
fn parse_option(option: &str) -> ContextOption {
    let (name, value) = option.split_once('=').unwrap_or((option, ""));
    let separator = if value.contains('|') { '|' } else { ',' };
    ContextOption {
        name: name.to_string(),
        values: value
            .split(separator)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    metrics: Option<Vec<RawMetric>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetric {
    name: Option<String>,
    context_options: Option<Vec<ContextOption>>,
    include_filters: Option<Vec<serde_json::Value>>,
    exclude_filters: Option<Vec<serde_json::Value>>,
}

/// Filters as Hubble's protobuf JSON mapping reads them.
fn filters(
    metric: &str,
    list: &'static str,
    raw: Option<Vec<serde_json::Value>>,
) -> Result<Vec<FlowFilter>, ConfigError> {
    let mut out = Vec::new();
    for (index, value) in raw.unwrap_or_default().into_iter().enumerate() {
        let syntax = |reason: String| ConfigError::FilterSyntax {
            metric: metric.to_string(),
            list,
            index,
            reason,
        };
        if !value.is_object() {
            return Err(syntax(format!("a filter is a map of FlowFilter fields, got {value}")));
        }
        let mut parsed =
            lumen_flow::format::parse_filters_json(&value.to_string()).map_err(|e| syntax(e.to_string()))?;
        out.push(parsed.pop().expect("one object, one filter"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(name: &str, values: &[&str]) -> ContextOption {
        ContextOption {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn the_string_form_is_hubbles_grammar() {
        let c = MetricsConfig::parse_flag(
            "drop:sourceContext=pod;destinationContext=dns|ip  flow\n\
             flows-to-world:any-drop;port http:labelsContext=source_ip,source_pod;",
        );
        let got: Vec<(&str, &[ContextOption])> = c
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.context_options.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "drop",
                    &[
                        option("sourceContext", &["pod"]),
                        option("destinationContext", &["dns", "ip"])
                    ][..]
                ),
                ("flow", &[][..]),
                ("flows-to-world", &[option("any-drop", &[]), option("port", &[])][..]),
                ("http", &[option("labelsContext", &["source_ip", "source_pod"])][..]),
            ]
        );
        assert!(MetricsConfig::parse_flag("  ").is_empty());
    }

    #[test]
    fn the_file_form_is_hubbles_yaml_with_filters() {
        let c = MetricsConfig::parse_yaml(
            r#"
metrics:
- name: drop
  contextOptions:
  - name: labelsContext
    values: [source_namespace, source_pod]
  - name: any-drop
  includeFilters:
  - source_pod: ["default/"]
  - destinationPod: ["kube-system/"]
    verdict: [DROPPED]
  excludeFilters: []
- name: flow
"#,
        )
        .unwrap();
        assert_eq!(c.metrics.len(), 2);
        let drop = &c.metrics[0];
        assert_eq!(
            drop.context_options,
            [
                option("labelsContext", &["source_namespace", "source_pod"]),
                option("any-drop", &[])
            ]
        );
        assert_eq!(drop.include_filters[0].source_pod, ["default/"]);
        assert_eq!(drop.include_filters[1].destination_pod, ["kube-system/"]);
        assert_eq!(
            drop.include_filters[1].verdict,
            [lumen_proto::flow::Verdict::Dropped as i32]
        );
        assert!(drop.exclude_filters.is_empty());
        assert_eq!(
            c.metrics[1],
            MetricConfig {
                name: "flow".into(),
                ..Default::default()
            }
        );
        // Hubble's empty file and an empty list are no metrics.
        assert!(MetricsConfig::parse_yaml("metrics:\n").unwrap().is_empty());
        assert!(MetricsConfig::parse_yaml("").unwrap().is_empty());
    }

    #[test]
    fn file_errors_say_where_and_why() {
        let err = |text: &str| MetricsConfig::parse_yaml(text).unwrap_err().to_string();
        assert_eq!(err("metrics:\n- contextOptions: []\n"), "metric number 1 has no name");
        assert!(
            err("metrics:\n- name: drop\n  excludeFilter: []\n")
                .starts_with("metrics[0]: unknown field `excludeFilter`"),
            "{}",
            err("metrics:\n- name: drop\n  excludeFilter: []\n")
        );
        assert_eq!(
            err("metrics:\n- name: drop\n  includeFilters:\n  - source_pods: [a]\n"),
            "metric \"drop\": includeFilters[0]: not a FlowFilter: unrecognized field name 'source_pods'"
        );
        assert_eq!(
            err("metrics:\n- name: drop\n  includeFilters:\n  - []\n"),
            "metric \"drop\": includeFilters[0]: a filter is a map of FlowFilter fields, got []"
        );
    }
}
