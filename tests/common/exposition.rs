//! Strict readers of the Prometheus text format 0.0.4 and of OpenMetrics text 1.0.0, shared by
//! the crate's unit tests and the integration tests: fast enough to run on every fuzz case, where
//! promtool would be too slow (and promtool reads only the text format).

use std::collections::HashSet;

/// A strict reader of the text format 0.0.4, enough to reject anything Prometheus would:
/// every sample belongs to the family announced just before it, names and labels are
/// well-formed, values parse, and no family or series appears twice.
pub fn check_exposition(body: &str) -> Result<Vec<String>, String> {
    let mut families: Vec<String> = Vec::new();
    let mut series = HashSet::new();
    let mut current: Option<String> = None;
    let mut histogram = false;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name) || families.iter().any(|f| f == name) {
                return Err(format!("bad or repeated family {name:?}"));
            }
            families.push(name.to_owned());
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let named = parts.next() == current.as_deref();
            let kind = parts.next();
            if !named || !matches!(kind, Some("gauge" | "counter" | "histogram")) {
                return Err(format!("TYPE out of place: {line:?}"));
            }
            histogram = kind == Some("histogram");
            continue;
        }
        let sample = Sample::parse(line)?;
        let family = if histogram {
            histogram_family(sample.name)
        } else {
            sample.name
        };
        if Some(family) != current.as_deref() {
            return Err(format!("sample outside its family: {line:?}"));
        }
        if !series.insert(sample.series.to_owned()) {
            return Err(format!("duplicate series: {line:?}"));
        }
    }
    Ok(families)
}

/// The family of a histogram's series: its name without `_bucket`, `_sum` or `_count`.
fn histogram_family(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// The units a family name may end in, which OpenMetrics then declares in a `# UNIT` line.
const UNITS: [&str; 2] = ["seconds", "bytes"];

/// A strict reader of OpenMetrics text 1.0.0 for what the exporter writes (gauges and
/// counters): `# HELP`, `# TYPE` and `# UNIT` at most once per family and before its samples,
/// every family announced once with a type, counters announced without `_total` and sampled
/// with it, a unit declared exactly when the name ends in one and matching that suffix, HELP
/// escaped as OpenMetrics requires, no other comment, no empty line, and `# EOF` once, last.
/// Returns the family names as announced.
pub fn check_open_metrics(body: &str) -> Result<Vec<String>, String> {
    let content = body
        .strip_suffix("# EOF\n")
        .or_else(|| body.strip_suffix("# EOF"))
        .ok_or("does not end with # EOF")?;
    if !content.is_empty() && !content.ends_with('\n') {
        return Err("# EOF is not on a line of its own".into());
    }
    let mut families: Vec<String> = Vec::new();
    let mut series = HashSet::new();
    let mut current: Option<OmFamily> = None;
    for line in content.split_terminator('\n') {
        if line.is_empty() {
            return Err("empty line".into());
        }
        if let Some(rest) = line.strip_prefix('#') {
            let (keyword, rest) = rest
                .strip_prefix(' ')
                .and_then(|r| r.split_once(' '))
                .ok_or(format!("bad comment: {line:?}"))?;
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if current.as_ref().is_none_or(|f| f.name != name) {
                if let Some(done) = current.take() {
                    done.close()?;
                }
                if !valid_name(name) || families.iter().any(|f| f == name) {
                    return Err(format!("bad or repeated family {name:?}"));
                }
                families.push(name.to_owned());
                current = Some(OmFamily::new(name));
            }
            let family = current.as_mut().expect("set above");
            if family.sampled {
                return Err(format!("metadata after the samples: {line:?}"));
            }
            let slot = match keyword {
                "HELP" => {
                    check_om_help(value).map_err(|e| format!("{e}: {line:?}"))?;
                    &mut family.help
                }
                "TYPE" => {
                    match value {
                        "gauge" | "histogram" => {}
                        "counter" if !name.ends_with("_total") => {}
                        _ => return Err(format!("bad TYPE: {line:?}")),
                    }
                    &mut family.kind
                }
                "UNIT" => {
                    if value.is_empty() || !name.ends_with(&format!("_{value}")) {
                        return Err(format!("unit is not the name's suffix: {line:?}"));
                    }
                    &mut family.unit
                }
                _ => return Err(format!("comment that is not metadata: {line:?}")),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(format!("repeated metadata: {line:?}"));
            }
            continue;
        }
        let sample = Sample::parse(line)?;
        let family = current
            .as_mut()
            .ok_or(format!("sample before any family: {line:?}"))?;
        let belongs = match family.kind.as_deref() {
            Some("counter") => {
                if sample.value.is_nan() || sample.value < 0.0 {
                    return Err(format!("bad counter value: {line:?}"));
                }
                sample.name == format!("{}_total", family.name)
            }
            // Only its suffixed series, never the bare name.
            Some("histogram") => {
                sample.name != family.name && histogram_family(sample.name) == family.name
            }
            Some(_) => sample.name == family.name,
            None => return Err(format!("sample of a family without TYPE: {line:?}")),
        };
        if !belongs {
            return Err(format!("sample outside its family: {line:?}"));
        }
        if !series.insert(sample.series.to_owned()) {
            return Err(format!("duplicate series: {line:?}"));
        }
        family.sampled = true;
    }
    if let Some(done) = current {
        done.close()?;
    }
    Ok(families)
}

/// The family being read by [`check_open_metrics`] and what it has declared so far.
struct OmFamily {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    unit: Option<String>,
    sampled: bool,
}

impl OmFamily {
    fn new(name: &str) -> OmFamily {
        OmFamily {
            name: name.to_owned(),
            help: None,
            kind: None,
            unit: None,
            sampled: false,
        }
    }

    fn close(self) -> Result<(), String> {
        if self.kind.is_none() {
            return Err(format!("family {:?} has no TYPE", self.name));
        }
        let suffix = UNITS
            .into_iter()
            .find(|unit| self.name.ends_with(&format!("_{unit}")));
        if self.unit.as_deref() != suffix {
            return Err(format!(
                "family {:?} declares unit {:?}, its name ends in {suffix:?}",
                self.name, self.unit
            ));
        }
        Ok(())
    }
}

/// OpenMetrics escapes backslash, double quote and newline in HELP, as in label values.
fn check_om_help(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.next(), Some('\\' | '"' | 'n')) => {}
            '\\' => return Err("bad escape in HELP".into()),
            '"' => return Err("unescaped quote in HELP".into()),
            _ => {}
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
}

/// One sample line, `name{labels} value`, without timestamp: the exporter writes none.
struct Sample<'a> {
    name: &'a str,
    /// Name and labels as written, which identify the series.
    series: &'a str,
    value: f64,
}

impl Sample<'_> {
    /// Reads a sample line with well-formed labels (escapes as both formats define them).
    fn parse(line: &str) -> Result<Sample<'_>, String> {
        let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
        let name = series.split('{').next().unwrap();
        let value = value
            .parse::<f64>()
            .map_err(|_| format!("bad value: {line:?}"))?;
        if !valid_name(name) {
            return Err(format!("bad name: {line:?}"));
        }
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .ok_or(format!("bad labels: {line:?}"))?;
            let mut chars = inner.chars().peekable();
            while chars.peek().is_some() {
                let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
                if !valid_name(&label) || chars.next() != Some('"') {
                    return Err(format!("bad label name: {line:?}"));
                }
                loop {
                    match chars.next() {
                        Some('\\') => {
                            if !matches!(chars.next(), Some('\\' | '"' | 'n')) {
                                return Err(format!("bad escape: {line:?}"));
                            }
                        }
                        Some('"') => break,
                        Some('\n') | None => {
                            return Err(format!("unterminated label: {line:?}"));
                        }
                        Some(_) => {}
                    }
                }
                match chars.next() {
                    Some(',') | None => {}
                    Some(_) => return Err(format!("bad label separator: {line:?}")),
                }
            }
        }
        Ok(Sample {
            name,
            series,
            value,
        })
    }
}

/// Compares with the file under tests/golden/, or writes it with UPDATE_GOLDEN=1.
pub fn assert_golden(name: &str, actual: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        expected == actual,
        "{} differs from the rendering:\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}
