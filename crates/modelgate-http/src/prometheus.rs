//! One writer of the Prometheus text exposition format (version 0.0.4):
//! each family's `# HELP` and `# TYPE` once, then its samples, label values
//! escaped as the format requires.

use std::fmt::{Display, Write as _};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, a sum and a count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page of metrics being written.
#[derive(Default)]
pub struct Text(String);

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escaped(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}

impl Text {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a family: its help and type.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escaped(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
        self
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A histogram: cumulative counts at each upper bound (`+Inf` last), the sum and the count.
    pub fn histogram(&mut self, name: &str, help: &str, buckets: &[(f64, u64)], over: u64, sum: f64) -> &mut Self {
        self.family(name, Kind::Histogram, help);
        let mut cum = 0;
        for (le, n) in buckets {
            cum += n;
            let le = le.to_string();
            self.sample(&format!("{name}_bucket"), &[("le", &le)], cum);
        }
        cum += over;
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], cum);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], cum)
    }

    /// The page.
    pub fn finish(self) -> String {
        self.0
    }

    /// The page as an HTTP answer.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_escaped_labels_and_a_histogram() {
        let mut t = Text::new();
        t.single("up", Kind::Gauge, "Whether it is up.", 1);
        t.family("calls_total", Kind::Counter, "Calls.").sample(
            "calls_total",
            &[("code", "a\"b\\c\nd"), ("check", "")],
            3,
        );
        t.histogram("lat_seconds", "Latency.", &[(0.001, 2), (0.01, 1)], 4, 0.5);
        assert_eq!(
            t.finish(),
            "# HELP up Whether it is up.\n# TYPE up gauge\nup 1\n\
             # HELP calls_total Calls.\n# TYPE calls_total counter\ncalls_total{code=\"a\\\"b\\\\c\\nd\",check=\"\"} 3\n\
             # HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.001\"} 2\nlat_seconds_bucket{le=\"0.01\"} 3\nlat_seconds_bucket{le=\"+Inf\"} 7\n\
             lat_seconds_sum 0.5\nlat_seconds_count 7\n"
        );
    }
}
