//! A strict reader of the Prometheus text format 0.0.4, shared by the crate's unit tests and the
//! integration tests: fast enough to run on every fuzz case, where promtool would be too slow.

/// A strict reader of the text format 0.0.4, enough to reject anything Prometheus would:
/// every sample belongs to the family announced just before it, names and labels are
/// well-formed, values parse, and no family or series appears twice.
pub fn check_exposition(body: &str) -> Result<Vec<String>, String> {
    let mut families: Vec<String> = Vec::new();
    let mut series = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    let mut histogram = false;
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
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
        let (name_and_labels, value) =
            line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
        let name = name_and_labels.split('{').next().unwrap();
        // A histogram's series carry a suffix: `_bucket` (with `le`), `_sum`, `_count`.
        let family = match histogram {
            true => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name),
            false => name,
        };
        if Some(family) != current.as_deref() {
            return Err(format!("sample outside its family: {line:?}"));
        }
        if value.parse::<f64>().is_err() {
            return Err(format!("bad value: {line:?}"));
        }
        if let Some(labels) = name_and_labels.strip_prefix(name).filter(|l| !l.is_empty()) {
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
        if !series.insert(name_and_labels.to_owned()) {
            return Err(format!("duplicate series: {line:?}"));
        }
    }
    Ok(families)
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
