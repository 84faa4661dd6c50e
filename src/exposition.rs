//! The Prometheus text format 0.0.4, written through a typed writer: a metric family is declared
//! once (name, help, type) and its samples can only be written under that name, right after its
//! header. Knows nothing of proposals or Redis; `render`, `server` and `process` describe their
//! own families with it.

use std::fmt;

pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

impl MetricType {
    const fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A metric family as it is announced: `# HELP` and `# TYPE` lines, then its samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
}

impl Family {
    pub(crate) const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Gauge,
        }
    }

    pub(crate) const fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Counter,
        }
    }

    pub(crate) const fn histogram(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: MetricType::Histogram,
        }
    }
}

/// A sample value: floats as the shortest text that reads back exactly (`1.0`, `0.753`),
/// integers as integers.
pub(crate) trait Value: Copy {
    fn write(self, out: &mut Vec<u8>, number: &mut ryu::Buffer);
}

impl Value for f64 {
    fn write(self, out: &mut Vec<u8>, number: &mut ryu::Buffer) {
        out.extend_from_slice(number.format_finite(self).as_bytes());
    }
}

impl Value for u64 {
    fn write(self, out: &mut Vec<u8>, _: &mut ryu::Buffer) {
        out.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
    }
}

/// Writes families into a byte buffer.
pub(crate) struct Writer {
    out: Vec<u8>,
    number: ryu::Buffer,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            out: Vec::with_capacity(capacity),
            number: ryu::Buffer::new(),
        }
    }

    /// Announces `family` and returns the only way to write its samples.
    pub(crate) fn family(&mut self, family: &Family) -> Samples<'_> {
        for part in [
            "# HELP ",
            family.name,
            " ",
            family.help,
            "\n# TYPE ",
            family.name,
            " ",
            family.kind.as_str(),
            "\n",
        ] {
            self.out.extend_from_slice(part.as_bytes());
        }
        Samples {
            writer: self,
            name: family.name,
        }
    }

    /// Announces a histogram `family` and returns the only way to write its series.
    pub(crate) fn histogram(&mut self, family: &Family) -> Buckets<'_> {
        debug_assert_eq!(family.kind, MetricType::Histogram);
        let name = family.name;
        let _ = self.family(family);
        Buckets { writer: self, name }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// The samples of the family announced last.
pub(crate) struct Samples<'w> {
    writer: &'w mut Writer,
    name: &'static str,
}

impl Samples<'_> {
    /// A sample without labels.
    pub(crate) fn value(&mut self, value: impl Value) -> &mut Self {
        self.labelled(&[], value)
    }

    /// A sample with these labels; their values are escaped here.
    pub(crate) fn labelled(&mut self, labels: &[(&str, &str)], value: impl Value) -> &mut Self {
        let Writer { out, number } = &mut *self.writer;
        out.extend_from_slice(self.name.as_bytes());
        for (i, (label, label_value)) in labels.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"{" } else { b"," });
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, label_value);
            out.push(b'"');
        }
        if !labels.is_empty() {
            out.push(b'}');
        }
        out.push(b' ');
        value.write(out, number);
        out.push(b'\n');
        self
    }

    /// A sample labelled by a symbol escaped beforehand (see [`EscapedLabel`]), plus at most
    /// one more label: the per-symbol families' shape, written once per symbol and family.
    pub(crate) fn symbol(
        &mut self,
        symbol: &EscapedLabel,
        extra: Option<(&str, &str)>,
        value: f64,
    ) -> &mut Self {
        let Writer { out, number } = &mut *self.writer;
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b"{symbol=\"");
        out.extend_from_slice(symbol.0.as_bytes());
        if let Some((label, label_value)) = extra {
            out.extend_from_slice(b"\",");
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, label_value);
        }
        out.extend_from_slice(b"\"} ");
        value.write(out, number);
        out.push(b'\n');
        self
    }
}

/// The series of the histogram announced last: cumulative buckets by upper bound, then the
/// `+Inf` bucket, the sum and the count, written under `_bucket`, `_sum` and `_count`.
pub(crate) struct Buckets<'w> {
    writer: &'w mut Writer,
    name: &'static str,
}

impl Buckets<'_> {
    /// Observations at or below `le`, counting those of the smaller buckets too.
    pub(crate) fn bucket(&mut self, le: f64, cumulative: u64) -> &mut Self {
        let Writer { out, number } = &mut *self.writer;
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b"_bucket{le=\"");
        out.extend_from_slice(number.format_finite(le).as_bytes());
        out.extend_from_slice(b"\"} ");
        cumulative.write(out, number);
        out.push(b'\n');
        self
    }

    /// The `+Inf` bucket (every observation), the sum and the count.
    pub(crate) fn finish(self, count: u64, sum: f64) {
        let Writer { out, number } = self.writer;
        for (suffix, value) in [
            ("_bucket{le=\"+Inf\"} ", None),
            ("_sum ", Some(sum)),
            ("_count ", None),
        ] {
            out.extend_from_slice(self.name.as_bytes());
            out.extend_from_slice(suffix.as_bytes());
            match value {
                Some(sum) => sum.write(out, number),
                None => count.write(out, number),
            }
            out.push(b'\n');
        }
    }
}

/// A label value escaped once, for the many samples that carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EscapedLabel(String);

impl EscapedLabel {
    pub(crate) fn new(value: &str) -> EscapedLabel {
        let mut out = Vec::with_capacity(value.len());
        escape_into(&mut out, value);
        EscapedLabel(String::from_utf8(out).expect("escaping keeps UTF-8"))
    }
}

impl fmt::Display for EscapedLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Escapes a label value as the text format requires: backslash, double quote and newline.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Family = Family::gauge("up_now", "Whether it is up.");
    const SEEN: Family = Family::counter("seen_total", "Things seen.");

    fn written(build: impl FnOnce(&mut Writer)) -> String {
        let mut writer = Writer::with_capacity(64);
        build(&mut writer);
        String::from_utf8(writer.into_bytes()).unwrap()
    }

    #[test]
    fn samples_follow_their_header_under_its_name() {
        let text = written(|w| {
            w.family(&UP).value(1.0);
            w.family(&SEEN)
                .labelled(&[("kind", "a")], 3_u64)
                .labelled(&[("kind", "b"), ("x", "y")], 0_u64);
        });
        assert_eq!(
            text,
            "# HELP up_now Whether it is up.\n# TYPE up_now gauge\nup_now 1.0\n\
             # HELP seen_total Things seen.\n# TYPE seen_total counter\n\
             seen_total{kind=\"a\"} 3\nseen_total{kind=\"b\",x=\"y\"} 0\n"
        );
    }

    #[test]
    fn histograms_write_buckets_sum_and_count() {
        const LATENCY: Family = Family::histogram("latency_seconds", "How long.");
        let text = written(|w| {
            let mut buckets = w.histogram(&LATENCY);
            buckets.bucket(0.1, 1).bucket(1.0, 3);
            buckets.finish(4, 7.5);
        });
        assert_eq!(
            text,
            "# HELP latency_seconds How long.\n# TYPE latency_seconds histogram\n\
             latency_seconds_bucket{le=\"0.1\"} 1\nlatency_seconds_bucket{le=\"1.0\"} 3\n\
             latency_seconds_bucket{le=\"+Inf\"} 4\nlatency_seconds_sum 7.5\nlatency_seconds_count 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(EscapedLabel::new(r#"a\b"c"#).to_string(), r#"a\\b\"c"#);
        assert_eq!(EscapedLabel::new("a\nb").to_string(), "a\\nb");
        assert_eq!(EscapedLabel::new("caf\u{e9}").to_string(), "caf\u{e9}");
        let symbol = EscapedLabel::new("we\"ird");
        let text = written(|w| {
            w.family(&UP).symbol(&symbol, Some(("action", "x\\y")), 0.5);
        });
        assert!(text.ends_with("up_now{symbol=\"we\\\"ird\",action=\"x\\\\y\"} 0.5\n"));
    }
}
