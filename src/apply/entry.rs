//! A stream entry as the apply layer wrote it, and its normalisation into label values: IDs,
//! fields, decisions and outcomes, defects, codes, and the cap on a label's distinct values.
//! Holds no counts: what is observed is kept by `apply`'s state.

use std::fmt;

use enum_map::Enum;

/// Longest normalised code kept; longer ones are free text, not codes.
const MAX_CODE_LEN: usize = 64;
pub(super) const OTHER: &str = "OTHER";

/// A stream entry's ID: milliseconds of the Redis server's clock and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl EntryId {
    pub(crate) fn parse(raw: &[u8]) -> Option<EntryId> {
        let text = std::str::from_utf8(raw).ok()?;
        let (ms, seq) = text.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry as Redis holds it: field names and values are bytes, in any number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: EntryId,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// A field's value as Redis holds it (the first, if the writer repeated the field).
    pub(super) fn raw(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// A field's value as trimmed text; invalid UTF-8 becomes replacement characters.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub(crate) enum StreamKind {
    Plan,
    Result,
}

impl StreamKind {
    pub(super) fn label(self) -> &'static str {
        match self {
            StreamKind::Plan => "plan",
            StreamKind::Result => "result",
        }
    }
}

/// A plan's decision, as the apply layer writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Enum)]
pub(crate) enum Decision {
    Execute,
    Skip,
    Blocked,
    Error,
    /// Missing or a value outside the four.
    Unknown,
}

impl Decision {
    pub(super) fn parse(raw: Option<&str>) -> Decision {
        match raw.map(str::to_ascii_uppercase).as_deref() {
            Some("EXECUTE") => Decision::Execute,
            Some("SKIP") => Decision::Skip,
            Some("BLOCKED") => Decision::Blocked,
            Some("ERROR") => Decision::Error,
            _ => Decision::Unknown,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Decision::Execute => "EXECUTE",
            Decision::Skip => "SKIP",
            Decision::Blocked => "BLOCKED",
            Decision::Error => "ERROR",
            Decision::Unknown => "UNKNOWN",
        }
    }
}

/// What became of a plan, from a result's decision, its synonyms, or its other fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Enum)]
pub(crate) enum Outcome {
    Executed,
    /// Dry-run mode: the plan would have been executed.
    DryRun,
    Skipped,
    Blocked,
    Error,
    Unknown,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::DryRun => "dry_run",
            Outcome::Skipped => "skipped",
            Outcome::Blocked => "blocked",
            Outcome::Error => "error",
            Outcome::Unknown => "unknown",
        }
    }

    /// The result's decision or one of its synonyms; without one (some code paths leave it out)
    /// `executed` and `would_execute`, then the decision of its `plan`, when that was seen:
    /// a skipped or blocked plan's `error` is its reason, an `EXECUTE` plan not executed
    /// failed. Without a plan, an `error` is taken for a failure.
    pub(super) fn of(entry: &Entry, plan: Option<Decision>) -> Outcome {
        let flag = |name: &str| {
            entry
                .get(name)
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        };
        let executed = flag("executed");
        let dry_run = flag("would_execute") == Some(true) && executed != Some(true);
        match entry
            .get("decision")
            .map(|d| d.to_ascii_uppercase())
            .as_deref()
        {
            Some("EXECUTE" | "EXECUTED" | "EXEC") if dry_run => Outcome::DryRun,
            // Meant to execute, did not, and not for a dry run: the execution failed.
            Some("EXECUTE" | "EXECUTED" | "EXEC") if executed == Some(false) => Outcome::Error,
            Some("EXECUTE" | "EXECUTED" | "EXEC") => Outcome::Executed,
            Some("SKIP" | "SKIPPED") => Outcome::Skipped,
            Some("BLOCKED" | "BLOCK") => Outcome::Blocked,
            Some("ERROR" | "FAILED" | "FAIL") => Outcome::Error,
            Some(_) => Outcome::Unknown,
            None if executed == Some(true) => Outcome::Executed,
            // A plan that was not to execute was not a dry run either, whatever its result's
            // `would_execute` says of the steps it had.
            None => match plan {
                Some(Decision::Skip) => Outcome::Skipped,
                Some(Decision::Blocked) => Outcome::Blocked,
                Some(Decision::Error) => Outcome::Error,
                _ if dry_run => Outcome::DryRun,
                Some(Decision::Execute) if executed == Some(false) => Outcome::Error,
                _ => Outcome::unplanned(entry, executed),
            },
        }
    }

    /// A result without a decision, executed or dry-run flag, and no plan to tell it by.
    fn unplanned(entry: &Entry, executed: Option<bool>) -> Outcome {
        if entry.get("error").is_some() {
            Outcome::Error
        } else if executed == Some(false) {
            Outcome::Skipped
        } else {
            Outcome::Unknown
        }
    }
}

/// Why an entry was counted but could not be read in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub(crate) enum Defect {
    /// No usable `symbol`.
    NoSymbol,
    /// A plan without a known decision, or a result whose outcome cannot be told.
    NoDecision,
    /// A `timestamp` that is not a number of seconds.
    BadTimestamp,
}

impl Defect {
    pub(super) fn label(self) -> &'static str {
        match self {
            Defect::NoSymbol => "no_symbol",
            Defect::NoDecision => "no_decision",
            Defect::BadTimestamp => "bad_timestamp",
        }
    }
}

/// A code as the metrics keep it: the part before `:` (free text follows), up to the first
/// character a code does not use, without `_`-separated parts that start with a digit, so
/// `layer4_kelly_250usdt` and `layer4_kelly_90usdt` are one code, `layer4_kelly`.
pub(super) fn normalise_code(raw: &str) -> Option<String> {
    // Read no further than a code can reach: a field may hold a megabyte of text.
    let head: String = raw
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_CODE_LEN + 1)
        .collect();
    if head.len() > MAX_CODE_LEN {
        return Some(OTHER.to_owned());
    }
    if let Some(rest) = head.strip_prefix("unknown_action_")
        && !rest.is_empty()
    {
        return Some("unknown_action".to_owned());
    }
    let parts: Vec<&str> = head
        .split('_')
        .filter(|part| !part.is_empty() && !part.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    Some(parts.join("_")).filter(|code| !code.is_empty())
}

/// Distinct values of one label: the first `cap` keep their name, later ones become [`OTHER`].
#[derive(Debug)]
pub(super) struct Bounded {
    cap: usize,
    kept: std::collections::HashSet<String>,
    pub(super) dropped: u64,
}

impl Bounded {
    pub(super) fn new(cap: usize) -> Bounded {
        Bounded {
            cap,
            kept: Default::default(),
            dropped: 0,
        }
    }

    pub(super) fn admit(&mut self, value: String) -> String {
        if value == OTHER || self.kept.contains(&value) {
            return value;
        }
        if self.kept.len() < self.cap {
            self.kept.insert(value.clone());
            value
        } else {
            self.dropped += 1;
            OTHER.to_owned()
        }
    }
}

/// The `error` inside a result's `details` JSON, which some code paths write instead.
pub(super) fn details_error(entry: &Entry) -> Option<String> {
    let details: serde_json::Value = serde_json::from_str(&entry.get("details")?).ok()?;
    Some(details.get("error")?.as_str()?.to_owned()).filter(|e| !e.is_empty())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::apply) fn entry(ms: u64, fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: EntryId { ms, seq: 0 },
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn codes_fold_numbers_and_free_text() {
        for (raw, code) in [
            ("layer4_kelly_250usdt", Some("layer4_kelly")),
            ("layer4_kelly_90usdt", Some("layer4_kelly")),
            ("layer4_no_edge:low_kelly", Some("layer4_no_edge")),
            (
                "position_limit_reached_7/10",
                Some("position_limit_reached"),
            ),
            (
                "execution_failed: Timeout after 30s <html>",
                Some("execution_failed"),
            ),
            ("unknown_action_FOO_BAR", Some("unknown_action")),
            ("kill_switch_active", Some("kill_switch_active")),
            (" ", None),
            ("123", None),
        ] {
            assert_eq!(normalise_code(raw).as_deref(), code, "{raw}");
        }
        assert_eq!(normalise_code(&"a".repeat(100)).as_deref(), Some(OTHER));
    }

    #[test]
    fn outcomes_from_decisions_synonyms_and_flags() {
        for (fields, outcome) in [
            (
                vec![("decision", "EXECUTE"), ("executed", "True")],
                Outcome::Executed,
            ),
            (vec![("decision", "EXEC")], Outcome::Executed),
            (
                vec![
                    ("decision", "EXECUTE"),
                    ("executed", "False"),
                    ("would_execute", "False"),
                    ("error", "no_position"),
                ],
                Outcome::Error,
            ),
            (
                vec![
                    ("decision", "EXECUTE"),
                    ("executed", "false"),
                    ("would_execute", "True"),
                ],
                Outcome::DryRun,
            ),
            (vec![("decision", "SKIPPED")], Outcome::Skipped),
            (vec![("decision", "BLOCK")], Outcome::Blocked),
            (vec![("decision", "FAILED")], Outcome::Error),
            (vec![("decision", "maybe")], Outcome::Unknown),
            (vec![("executed", "true")], Outcome::Executed),
            (
                vec![("would_execute", "True"), ("executed", "False")],
                Outcome::DryRun,
            ),
            (
                vec![("executed", "False"), ("error", "no_position")],
                Outcome::Error,
            ),
            (vec![("executed", "False")], Outcome::Skipped),
            (vec![], Outcome::Unknown),
        ] {
            assert_eq!(Outcome::of(&entry(1, &fields), None), outcome, "{fields:?}");
        }
        // Without a decision, the plan's tells a reason from a failure.
        let reason = entry(1, &[("executed", "False"), ("error", "not_in_allowlist")]);
        for (plan, outcome) in [
            (Decision::Skip, Outcome::Skipped),
            (Decision::Blocked, Outcome::Blocked),
            (Decision::Error, Outcome::Error),
            (Decision::Execute, Outcome::Error),
            (Decision::Unknown, Outcome::Error),
        ] {
            assert_eq!(Outcome::of(&reason, Some(plan)), outcome, "{plan:?}");
        }
        let allowlist = [
            ("executed", "False"),
            ("would_execute", "True"),
            ("error", "not_in_allowlist"),
        ];
        for (plan, outcome) in [
            (Some(Decision::Skip), Outcome::Skipped),
            (Some(Decision::Blocked), Outcome::Blocked),
            (Some(Decision::Execute), Outcome::DryRun),
            (None, Outcome::DryRun),
        ] {
            assert_eq!(
                Outcome::of(&entry(1, &allowlist), plan),
                outcome,
                "{plan:?}"
            );
        }
        let executed = entry(1, &[("executed", "True")]);
        assert_eq!(
            Outcome::of(&executed, Some(Decision::Skip)),
            Outcome::Executed
        );
        let skip = entry(1, &[("decision", "SKIP"), ("error", "no_position")]);
        assert_eq!(
            Outcome::of(&skip, Some(Decision::Execute)),
            Outcome::Skipped,
            "a decision written wins"
        );
    }

    #[test]
    fn entry_ids_parse_and_order() {
        let a = EntryId::parse(b"1769130500000-0").unwrap();
        let b = EntryId::parse(b"1769130500000-1").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1769130500000-0");
        assert_eq!(EntryId::parse(b"nope"), None);
    }
}
