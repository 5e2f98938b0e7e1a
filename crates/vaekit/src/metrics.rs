//! Named metrics: what a training step or an epoch measured, as an ordered list of name ->
//! value (Keras' logs, Lightning's `self.log`), so `metrics.jsonl`, the progress line and the
//! plots follow a new training method without edits.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Named values in the order they were added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    /// No values.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds `name` = `value` (replacing an earlier value of the same name in place).
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Builder form of [`Metrics::push`].
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Metrics {
        self.push(name, value);
        self
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// (name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value that is NaN or infinite, with its name.
    pub fn first_non_finite(&self) -> Option<(&str, f64)> {
        self.iter().find(|(_, v)| !v.is_finite())
    }

    /// Every name prefixed with `prefix` (`train_`, `test_`).
    pub fn prefixed(&self, prefix: &str) -> Metrics {
        Metrics(
            self.0
                .iter()
                .map(|(n, v)| (format!("{prefix}{n}"), *v))
                .collect(),
        )
    }

    /// Appends every value of `other`.
    pub fn extend(&mut self, other: Metrics) {
        for (n, v) in other.0 {
            self.push(n, v);
        }
    }

    /// "loss 1.23 recon 0.45": a progress line.
    pub fn summary(&self, digits: usize) -> String {
        self.iter()
            .map(|(n, v)| format!("{n} {v:.digits$}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Running means of step metrics over an epoch.
#[derive(Clone, Debug, Default)]
pub struct MetricMeans {
    sums: Metrics,
    count: usize,
}

impl MetricMeans {
    /// Adds one step's values.
    pub fn add(&mut self, m: &Metrics) {
        for (n, v) in m.iter() {
            let s = self.sums.get(n).unwrap_or(0.0);
            self.sums.push(n, s + v);
        }
        self.count += 1;
    }

    /// The mean of every name over the steps added (each divided by the step count).
    pub fn means(&self) -> Metrics {
        let k = self.count.max(1) as f64;
        Metrics(
            self.sums
                .0
                .iter()
                .map(|(n, v)| (n.clone(), v / k))
                .collect(),
        )
    }
}

/// One line of `metrics.jsonl`: the epoch, the step count, then named values and named labels
/// (such as the `objective` that says what `train_loss` is), written as one flat JSON object
/// in this order. A non-finite value is written as JSON `null` and read back as NaN.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochMetrics {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Steps taken in all by the end of the epoch.
    pub step: usize,
    /// The values, e.g. `train_loss`, `test_neg_elbo`, `images_per_sec`.
    pub values: Metrics,
    /// Text values, e.g. `objective`.
    pub labels: Vec<(String, String)>,
}

impl EpochMetrics {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name)
    }

    /// The label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for EpochMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2 + self.values.0.len() + self.labels.len()))?;
        m.serialize_entry("epoch", &self.epoch)?;
        m.serialize_entry("step", &self.step)?;
        for (n, v) in self.values.iter() {
            m.serialize_entry(n, &v)?;
        }
        for (n, v) in &self.labels {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

/// A value of a metrics line: a number, a text, or `null` (a NaN written by serde_json).
#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Number(f64),
    Text(String),
    Null(()),
}

impl<'de> Deserialize<'de> for EpochMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = EpochMetrics;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with epoch, step and named values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EpochMetrics, A::Error> {
                let (mut epoch, mut step) = (None, None);
                let mut out = EpochMetrics::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "epoch" => epoch = Some(map.next_value::<usize>()?),
                        "step" => step = Some(map.next_value::<usize>()?),
                        _ => match map.next_value::<Value>()? {
                            Value::Number(v) => out.values.push(key, v),
                            Value::Null(()) => out.values.push(key, f64::NAN),
                            Value::Text(t) => out.labels.push((key, t)),
                        },
                    }
                }
                out.epoch = epoch.ok_or_else(|| de::Error::missing_field("epoch"))?;
                out.step = step.ok_or_else(|| de::Error::missing_field("step"))?;
                Ok(out)
            }
        }
        d.deserialize_map(LineVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_its_order_and_reads_back() {
        let m = EpochMetrics {
            epoch: 3,
            step: 1800,
            values: Metrics::new()
                .with("train_loss", 250.5)
                .with("test_neg_elbo", 249.25)
                .with("a_first_looking_name", 1.0),
            labels: vec![("objective".into(), "elbo".into())],
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(
            line,
            r#"{"epoch":3,"step":1800,"train_loss":250.5,"test_neg_elbo":249.25,"a_first_looking_name":1.0,"objective":"elbo"}"#
        );
        assert_eq!(serde_json::from_str::<EpochMetrics>(&line).unwrap(), m);
    }

    #[test]
    fn lines_of_the_first_format_and_nan_read_back() {
        // A line as vaekit 0.1 wrote it before named metrics, with a NaN written as null.
        let old = r#"{"epoch":1,"step":600,"train_loss":286.29,"train_recon":270.1,"train_kl":16.19,"test_neg_elbo":null,"test_recon":240.0,"test_kl":18.8,"images_per_sec":6000.0,"seconds":10.0,"beta":1.0,"objective":"elbo"}"#;
        let m: EpochMetrics = serde_json::from_str(old).unwrap();
        assert_eq!((m.epoch, m.step), (1, 600));
        assert_eq!(m.get("train_kl"), Some(16.19));
        assert!(m.get("test_neg_elbo").unwrap().is_nan());
        assert_eq!(m.label("objective"), Some("elbo"));
        let names: Vec<&str> = m.values.iter().map(|(n, _)| n).collect();
        assert_eq!(names[..3], ["train_loss", "train_recon", "train_kl"]);
        assert!(serde_json::from_str::<EpochMetrics>(r#"{"step":1}"#).is_err());
        assert!(serde_json::from_str::<EpochMetrics>(r#"{"epoch":1,"step":1,"x":[1]}"#).is_err());
    }

    #[test]
    fn means_average_every_name_over_the_steps() {
        let mut acc = MetricMeans::default();
        acc.add(&Metrics::new().with("loss", 2.0).with("kl", 1.0));
        acc.add(&Metrics::new().with("loss", 4.0).with("kl", 0.0));
        let m = acc.means();
        assert_eq!((m.get("loss"), m.get("kl")), (Some(3.0), Some(0.5)));
        assert_eq!(m.prefixed("train_").get("train_loss"), Some(3.0));
        assert_eq!(
            Metrics::new()
                .with("a", 1.0)
                .with("b", f64::NAN)
                .first_non_finite()
                .map(|p| p.0),
            Some("b")
        );
    }
}
