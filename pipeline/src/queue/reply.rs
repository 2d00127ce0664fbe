//! Reading Redis stream replies (XREADGROUP, XAUTOCLAIM), in either protocol's shape.

use redis::Value;

/// A text value.
pub(super) fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The entries per stream of an XREADGROUP reply: `[[name, entries], ...]` (RESP2) or
/// `{name: entries}` (RESP3).
pub(super) fn streams(reply: &Value) -> Vec<(String, &[Value])> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(name, entries)| match entries {
            Value::Array(entries) => Some((string(name)?, entries.as_slice())),
            _ => None,
        })
        .collect()
}

/// The entries an XAUTOCLAIM reply claimed: `[next cursor, entries, deleted ids]`.
pub(super) fn claimed(reply: &Value) -> &[Value] {
    match reply {
        Value::Array(parts) => match parts.get(1) {
            Some(Value::Array(entries)) => entries,
            _ => &[],
        },
        _ => &[],
    }
}

/// `[entry id, [field, value, ...]]` → the entry id and its fields; `None` for an entry
/// deleted meanwhile (its fields are nil).
pub(super) fn entry(entry: &Value) -> Option<(String, Vec<(String, String)>)> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let id = string(parts.first()?)?;
    let Some(Value::Array(fields)) = parts.get(1) else {
        return None;
    };
    let fields = fields
        .chunks_exact(2)
        .filter_map(|kv| Some((string(&kv[0])?, string(&kv[1])?)))
        .collect();
    Some((id, fields))
}

/// The value of `name` among an entry's fields.
pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
