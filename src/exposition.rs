//! The two exposition formats Prometheus scrapes as text, the Prometheus text format 0.0.4 and
//! OpenMetrics text 1.0.0, written through a typed writer: a metric family is declared once
//! (name, help, type) and its samples can only be written under that name, right after its
//! header. The formats differ only in some headers and OpenMetrics' final `# EOF`, so a body can
//! be written once for both ([`DualWriter`]). Knows nothing of proposals or Redis; `render`,
//! `server` and `process` describe their own families with it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4, the default.
    Text,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    pub(crate) const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

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

/// The units a family's name may end in; OpenMetrics declares them in a `# UNIT` line.
const UNITS: [&str; 2] = ["seconds", "bytes"];

/// A metric family as it is announced: `# HELP` and `# TYPE` lines (and `# UNIT` in
/// OpenMetrics), then its samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
}

impl Family {
    pub(crate) const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family::new(name, help, MetricType::Gauge)
    }

    /// A counter's name ends in `_total`, which its samples carry in both formats and which
    /// OpenMetrics leaves out of the family's name.
    pub(crate) const fn counter(name: &'static str, help: &'static str) -> Family {
        assert!(ends_with(name, "_total"), "a counter's name ends in _total");
        Family::new(name, help, MetricType::Counter)
    }

    /// Help is written as it is: the formats escape different characters in it, so it may hold
    /// none of them (checked at compile time, families being constants).
    const fn new(name: &'static str, help: &'static str, kind: MetricType) -> Family {
        let mut i = 0;
        while i < help.len() {
            assert!(
                !matches!(help.as_bytes()[i], b'\\' | b'"' | b'\n'),
                "help holds no backslash, quote or newline"
            );
            i += 1;
        }
        Family { name, help, kind }
    }

    /// The name OpenMetrics announces: a counter's without the `_total` of its samples.
    fn open_metrics_name(&self) -> &'static str {
        match self.kind {
            MetricType::Gauge | MetricType::Histogram => self.name,
            MetricType::Counter => &self.name[..self.name.len() - "_total".len()],
        }
    }

    /// The unit the (OpenMetrics) name ends in, if any.
    fn unit(&self) -> Option<&'static str> {
        let name = self.open_metrics_name();
        UNITS.into_iter().find(|unit| {
            name.strip_suffix(unit)
                .is_some_and(|rest| rest.ends_with('_'))
        })
    }

    /// Whether OpenMetrics announces the family differently from the text format.
    fn differs_in_open_metrics(&self) -> bool {
        self.kind == MetricType::Counter || self.unit().is_some()
    }

    fn write_header(&self, format: Format, out: &mut Vec<u8>) {
        let name = match format {
            Format::Text => self.name,
            Format::OpenMetrics => self.open_metrics_name(),
        };
        for part in [
            "# HELP ",
            name,
            " ",
            self.help,
            "\n# TYPE ",
            name,
            " ",
            self.kind.as_str(),
            "\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        if let (Format::OpenMetrics, Some(unit)) = (format, self.unit()) {
            for part in ["# UNIT ", name, " ", unit, "\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
    }

    /// A histogram's series are its name with `_bucket`, `_sum` and `_count`.
    pub(crate) const fn histogram(name: &'static str, help: &'static str) -> Family {
        Family::new(name, help, MetricType::Histogram)
    }
}

const fn ends_with(text: &str, suffix: &str) -> bool {
    let (text, suffix) = (text.as_bytes(), suffix.as_bytes());
    if text.len() < suffix.len() {
        return false;
    }
    let mut i = 0;
    while i < suffix.len() {
        if text[text.len() - suffix.len() + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
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

/// Writes families in one format into a byte buffer.
pub(crate) struct Writer {
    out: Vec<u8>,
    number: ryu::Buffer,
    format: Format,
}

impl Writer {
    pub(crate) fn new(format: Format, capacity: usize) -> Writer {
        Writer {
            out: Vec::with_capacity(capacity),
            number: ryu::Buffer::new(),
            format,
        }
    }

    /// Announces `family` and returns the only way to write its samples.
    pub(crate) fn family(&mut self, family: &Family) -> Samples<'_> {
        family.write_header(self.format, &mut self.out);
        self.samples(family)
    }

    /// The samples of `family` without its header, for a piece of a body that follows the
    /// piece announcing it.
    pub(crate) fn samples(&mut self, family: &Family) -> Samples<'_> {
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

    /// The families written so far, not ended: more follow them in the same response.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// Ends the exposition: OpenMetrics requires `# EOF` as its last line.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.format == Format::OpenMetrics {
            self.out.extend_from_slice(b"# EOF\n");
        }
        self.out
    }
}

/// Writes families in both formats at once: the samples, the bulk of a body, are the same in
/// both, so they are written once, in the text format's bytes, and OpenMetrics keeps only the
/// headers it writes differently.
pub(crate) struct DualWriter {
    text: Writer,
    replacements: Vec<(Range<usize>, Vec<u8>)>,
}

impl DualWriter {
    pub(crate) fn with_capacity(capacity: usize) -> DualWriter {
        DualWriter {
            text: Writer::new(Format::Text, capacity),
            replacements: Vec::new(),
        }
    }

    /// Announces `family` in both formats and returns the only way to write its samples.
    pub(crate) fn family(&mut self, family: &Family) -> Samples<'_> {
        let start = self.text.out.len();
        family.write_header(Format::Text, &mut self.text.out);
        if family.differs_in_open_metrics() {
            let mut header = Vec::with_capacity(2 * (self.text.out.len() - start));
            family.write_header(Format::OpenMetrics, &mut header);
            self.replacements.push((start..self.text.out.len(), header));
        }
        self.text.samples(family)
    }

    /// The families written so far, not ended: a tail in the chosen format follows them.
    pub(crate) fn into_body(self) -> DualBody {
        DualBody {
            text: self.text.out,
            replacements: self.replacements,
        }
    }
}

/// A body written for both formats: the text format's bytes, and the OpenMetrics bytes that
/// replace some ranges of them (headers of counters and of families with a unit).
#[derive(Debug)]
pub(crate) struct DualBody {
    pub text: Vec<u8>,
    /// In order, not overlapping.
    replacements: Vec<(Range<usize>, Vec<u8>)>,
}

/// A run of a [`DualBody`]: the same bytes in both formats (a range of the text format's), or
/// each format's own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Shared(Range<usize>),
    Own {
        text: Vec<u8>,
        open_metrics: Vec<u8>,
    },
}

impl DualBody {
    /// The body as runs that either format's bytes are made of, in order. A shared run shorter
    /// than `min_shared` is copied into the formats' own runs around it, so that a body is a
    /// few large shared runs and small runs of its own, however many headers differ.
    pub(crate) fn segments(&self, min_shared: usize) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut own: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut shared = |range: Range<usize>, own: &mut Option<(Vec<u8>, Vec<u8>)>| {
            if range.is_empty() {
                return;
            }
            if range.len() >= min_shared {
                if let Some((text, open_metrics)) = own.take() {
                    segments.push(Segment::Own { text, open_metrics });
                }
                segments.push(Segment::Shared(range));
            } else {
                let (text, open_metrics) = own.get_or_insert_default();
                text.extend_from_slice(&self.text[range.clone()]);
                open_metrics.extend_from_slice(&self.text[range]);
            }
        };
        let mut at = 0;
        for (replaced, instead) in &self.replacements {
            shared(at..replaced.start, &mut own);
            let (text, open_metrics) = own.get_or_insert_default();
            text.extend_from_slice(&self.text[replaced.clone()]);
            open_metrics.extend_from_slice(instead);
            at = replaced.end;
        }
        shared(at..self.text.len(), &mut own);
        if let Some((text, open_metrics)) = own {
            segments.push(Segment::Own { text, open_metrics });
        }
        segments
    }

    /// One format's bytes, put together from [`DualBody::segments`] as the server sends them.
    #[cfg(test)]
    pub(crate) fn assembled(&self, format: Format, min_shared: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for segment in self.segments(min_shared) {
            match (segment, format) {
                (Segment::Shared(range), _) => out.extend_from_slice(&self.text[range]),
                (Segment::Own { text, .. }, Format::Text) => out.extend(text),
                (Segment::Own { open_metrics, .. }, Format::OpenMetrics) => {
                    out.extend(open_metrics);
                }
            }
        }
        out
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
        let Writer { out, number, .. } = &mut *self.writer;
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
        symbol: &EscapedLabel<'_>,
        extra: Option<(&str, &str)>,
        value: f64,
    ) -> &mut Self {
        let Writer { out, number, .. } = &mut *self.writer;
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
        let Writer { out, number, .. } = &mut *self.writer;
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
        let Writer { out, number, .. } = self.writer;
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

/// A label value escaped once, for the many samples that carry it; borrowed when it needs no
/// escaping, as symbols hardly ever do, so that a full render allocates nothing per symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EscapedLabel<'a>(Cow<'a, str>);

impl<'a> EscapedLabel<'a> {
    pub(crate) fn new(value: &'a str) -> EscapedLabel<'a> {
        if !needs_escaping(value) {
            return EscapedLabel(Cow::Borrowed(value));
        }
        let mut out = Vec::with_capacity(value.len() + 2);
        escape_into(&mut out, value);
        EscapedLabel(Cow::Owned(
            String::from_utf8(out).expect("escaping keeps UTF-8"),
        ))
    }
}

impl fmt::Display for EscapedLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A scan of the bytes: the three are ASCII, so no character need be decoded.
fn needs_escaping(value: &str) -> bool {
    value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// Escapes a label value as both formats require: backslash, double quote and newline.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    if !needs_escaping(value) {
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
    use crate::exposition_check::{check_exposition, check_open_metrics};

    const UP: Family = Family::gauge("up_now", "Whether it is up.");
    const SEEN: Family = Family::counter("seen_total", "Things seen.");
    const WAITED: Family = Family::counter("waited_seconds_total", "Time spent waiting.");
    const SIZE: Family = Family::gauge("size_bytes", "Size.");

    fn written(format: Format, build: impl FnOnce(&mut Writer)) -> String {
        let mut writer = Writer::new(format, 64);
        build(&mut writer);
        String::from_utf8(writer.finish()).unwrap()
    }

    #[test]
    fn samples_follow_their_header_under_its_name() {
        let text = written(Format::Text, |w| {
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
        let text = written(Format::Text, |w| {
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
    fn open_metrics_names_counters_without_total_declares_units_and_ends() {
        let text = written(Format::OpenMetrics, |w| {
            w.family(&UP).value(1.0);
            w.family(&SEEN).value(3_u64);
            w.family(&WAITED).value(0.5);
            w.family(&SIZE).value(10_u64);
        });
        assert_eq!(
            text,
            "# HELP up_now Whether it is up.\n# TYPE up_now gauge\nup_now 1.0\n\
             # HELP seen Things seen.\n# TYPE seen counter\nseen_total 3\n\
             # HELP waited_seconds Time spent waiting.\n# TYPE waited_seconds counter\n\
             # UNIT waited_seconds seconds\nwaited_seconds_total 0.5\n\
             # HELP size_bytes Size.\n# TYPE size_bytes gauge\n# UNIT size_bytes bytes\n\
             size_bytes 10\n# EOF\n"
        );
        check_open_metrics(&text).unwrap();
    }

    /// A name that only looks like it ends in a unit has none.
    #[test]
    fn a_unit_is_a_whole_suffix() {
        assert_eq!(Family::gauge("nanoseconds", "x").unit(), None);
        assert_eq!(Family::gauge("wait_microseconds", "x").unit(), None);
        assert_eq!(Family::gauge("a_seconds", "x").unit(), Some("seconds"));
        assert_eq!(SEEN.unit(), None);
        assert_eq!(WAITED.unit(), Some("seconds"));
    }

    #[test]
    fn a_dual_body_is_either_format_and_shares_long_runs() {
        let mut writer = DualWriter::with_capacity(64);
        let names: Vec<String> = (0..50).map(|i| format!("S{i}")).collect();
        let symbols: Vec<EscapedLabel> = names.iter().map(|n| EscapedLabel::new(n)).collect();
        for family in [&UP, &SEEN, &SIZE, &WAITED] {
            let mut samples = writer.family(family);
            for symbol in &symbols {
                samples.symbol(symbol, None, 1.0);
            }
        }
        let body = writer.into_body();
        let single = |format| {
            written(format, |w| {
                for family in [&UP, &SEEN, &SIZE, &WAITED] {
                    let mut samples = w.family(family);
                    for symbol in &symbols {
                        samples.symbol(symbol, None, 1.0);
                    }
                }
            })
        };
        for min_shared in [0, 1, 100, 1_000, 1 << 20] {
            let text = String::from_utf8(body.assembled(Format::Text, min_shared)).unwrap();
            assert_eq!(text, single(Format::Text));
            check_exposition(&text).unwrap();
            let open_metrics =
                String::from_utf8(body.assembled(Format::OpenMetrics, min_shared)).unwrap();
            assert_eq!(open_metrics + "# EOF\n", single(Format::OpenMetrics));
        }
        // UP's header and samples are shared; from SEEN's header on, runs alternate.
        let segments = body.segments(100);
        assert!(matches!(&segments[0], Segment::Shared(r) if r.start == 0));
        assert_eq!(segments.len(), 7, "{segments:?}");
        assert!(matches!(
            body.segments(1 << 20).as_slice(),
            [Segment::Own { .. }]
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(EscapedLabel::new(r#"a\b"c"#).to_string(), r#"a\\b\"c"#);
        assert_eq!(EscapedLabel::new("a\nb").to_string(), "a\\nb");
        assert_eq!(EscapedLabel::new("caf\u{e9}").to_string(), "caf\u{e9}");
        assert!(matches!(
            EscapedLabel::new("BTCUSDT").0,
            Cow::Borrowed("BTCUSDT")
        ));
        let symbol = EscapedLabel::new("we\"ird");
        let text = written(Format::Text, |w| {
            w.family(&UP).symbol(&symbol, Some(("action", "x\\y")), 0.5);
        });
        assert!(text.ends_with("up_now{symbol=\"we\\\"ird\",action=\"x\\\\y\"} 0.5\n"));
    }
}
