//! The streams' replies read: entries of XREAD and XREVRANGE, XINFO's fields and consumer
//! groups, whichever RESP version carries them. Parsing only: which commands are sent is the
//! follower's, what an entry means `apply`'s.

use std::collections::HashMap;

use redis::Value;

use crate::apply::{Entry, EntryId, Group};

pub(super) fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn number(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(other) => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
        None => 0,
    }
}

pub(super) fn id(value: Option<&Value>) -> Option<EntryId> {
    EntryId::parse(text(value?)?.as_bytes())
}

/// A reply of alternating names and values (XINFO), by name.
pub(super) fn pairs(value: &Value) -> HashMap<String, &Value> {
    match value {
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => items(value)
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, pair.get(1)?)))
            .collect(),
    }
}

/// `[id, [field, value, ...]]` as an entry; `None` for anything else.
pub(super) fn entry(value: &Value) -> Option<Entry> {
    let parts = items(value);
    let id = EntryId::parse(text(parts.first()?)?.as_bytes())?;
    let bytes = |v: &Value| match v {
        Value::BulkString(bytes) => Some(bytes.clone()),
        other => text(other).map(String::into_bytes),
    };
    let fields = items(parts.get(1)?)
        .chunks(2)
        .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?)?)))
        .collect();
    Some(Entry { id, fields })
}

pub(super) fn consumer_groups(reply: &Value) -> Vec<Group> {
    items(reply)
        .iter()
        .filter_map(|group| {
            let fields = pairs(group);
            let name = text(fields.get("name")?)?;
            // Names become label values: keep them printable and short.
            let name: String = name
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .take(64)
                .collect();
            Some(Group {
                name,
                pending: number(fields.get("pending").copied()),
                lag: match fields.get("lag") {
                    Some(Value::Nil) | None => None,
                    Some(lag) => Some(number(Some(lag))),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_into_entries_and_groups() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let raw = Value::Array(vec![
            bulk("1769130500000-3"),
            Value::Array(vec![
                bulk("symbol"),
                bulk("BTCUSDT"),
                Value::BulkString(vec![0xff]),
                bulk("x"),
            ]),
        ]);
        let parsed = entry(&raw).unwrap();
        assert_eq!(
            parsed.id,
            EntryId {
                ms: 1_769_130_500_000,
                seq: 3
            }
        );
        assert_eq!(parsed.fields.len(), 2);
        let groups = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("guard\n"),
            bulk("pending"),
            Value::Int(7),
            bulk("lag"),
            Value::Nil,
        ])]);
        assert_eq!(
            consumer_groups(&groups),
            [Group {
                name: "guard\u{fffd}".into(),
                pending: 7,
                lag: None
            }]
        );
        assert_eq!(entry(&bulk("garbage")), None);
    }
}
