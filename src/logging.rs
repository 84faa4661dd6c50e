//! The log lines on stderr, one event a line, in logfmt or JSON with the keys Prometheus' own
//! logger writes (`time`, `level`, `source`, `msg`, then the event's fields), so that one log
//! pipeline reads this exporter, Prometheus and node_exporter alike.
//!
//! A layer of its own because tracing-subscriber's formatters (and tracing-logfmt) write key
//! names of their own (`timestamp`, `target`, fields nested under `fields`), which they do not
//! let a caller rename.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::civil;
use crate::config::LogFormat;

/// Logs events at `level` and above to stderr, in `format`.
pub fn init(level: Level, format: LogFormat) {
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with(Lines::new(format, Box::new(std::io::stderr())))
        .init();
}

/// Writes each event as one line.
struct Lines {
    format: LogFormat,
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

impl Lines {
    fn new(format: LogFormat, out: Box<dyn std::io::Write + Send>) -> Lines {
        Lines {
            format,
            out: Mutex::new(out),
        }
    }
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let source = match (metadata.file(), metadata.line()) {
            (Some(file), Some(line)) => format!("{}:{line}", file.trim_start_matches("src/")),
            _ => metadata.target().to_owned(),
        };
        let head = [
            ("time", Value::Text(now())),
            ("level", Value::Text(level_name(*metadata.level()).into())),
            ("source", Value::Text(source)),
            ("msg", Value::Text(fields.message)),
        ];
        let pairs = head
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(fields.others.iter().map(|(k, v)| (k.as_str(), v)));
        let line = match self.format {
            LogFormat::Logfmt => logfmt(pairs),
            LogFormat::Json => json(pairs),
        };
        if let Ok(mut out) = self.out.lock() {
            // Nowhere to report a failed write of the log itself.
            let _ = out.write_all(line.as_bytes());
        }
    }
}

/// slog's level names, as Prometheus prints them; slog has no trace level.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Now as RFC 3339 in UTC with milliseconds, as Prometheus writes `time`.
fn now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    format!("{}.{:03}Z", civil::format_utc(secs), since.subsec_millis())
}

enum Value {
    Text(String),
    /// A number or a boolean, bare in both formats.
    Bare(String),
}

/// The event's message and its other fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Text(text)) => self.message = text,
            (name, value) => self.others.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::Text(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Text(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Bare(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Bare(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bare(value.to_string()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = if value.is_finite() {
            Value::Bare(value.to_string())
        } else {
            Value::Text(value.to_string())
        };
        self.push(field, value);
    }
}

fn logfmt<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> String {
    let mut line = String::new();
    for (key, value) in pairs {
        if !line.is_empty() {
            line.push(' ');
        }
        let text = match value {
            Value::Text(text) | Value::Bare(text) => text,
        };
        let plain = !text.is_empty()
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        if plain {
            let _ = write!(line, "{key}={text}");
        } else {
            let _ = write!(line, "{key}={}", quoted(text));
        }
    }
    line.push('\n');
    line
}

/// `text` between double quotes, with quotes, backslashes and control characters escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> String {
    let mut line = String::from("{");
    for (key, value) in pairs {
        if line.len() > 1 {
            line.push(',');
        }
        let value = match value {
            Value::Text(text) => serde_json::Value::from(text.as_str()).to_string(),
            Value::Bare(bare) => bare.clone(),
        };
        let _ = write!(line, "{}:{value}", serde_json::Value::from(key));
    }
    line.push_str("}\n");
    line
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(Lines::new(format, Box::new(buffer.clone())));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                addr = "127.0.0.1:6379",
                symbols = 3,
                up = false,
                took = ?std::time::Duration::from_millis(5),
                "refresh failed: \"quoted\" = reason"
            );
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn logfmt_lines_carry_prometheus_keys() {
        let line = log(LogFormat::Logfmt);
        assert!(
            line.starts_with("time=20") && line.ends_with('\n'),
            "{line}"
        );
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.len() == "time=2026-01-23T01:08:20.123Z".len());
        assert!(rest.starts_with("level=WARN source=logging.rs:"), "{line}");
        assert!(
            rest.contains(
                " msg=\"refresh failed: \\\"quoted\\\" = reason\" addr=127.0.0.1:6379 \
                 symbols=3 up=false took=5ms\n"
            ),
            "{line}"
        );
    }

    #[test]
    fn json_lines_carry_prometheus_keys() {
        let line = log(LogFormat::Json);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["msg"], "refresh failed: \"quoted\" = reason");
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
        assert!(value["source"].as_str().unwrap().starts_with("logging.rs:"));
        assert_eq!(value["symbols"], 3);
        assert_eq!(value["up"], false);
        assert_eq!(value["took"], "5ms");
        assert!(line.starts_with("{\"time\":"), "{line}");
    }
}
