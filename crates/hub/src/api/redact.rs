//! Heap snapshot contents are admin-only wherever they leave the hub (contract, "Operators and
//! roles"). An analysis or a diff names the largest objects and the steps of their retainer
//! paths; for a string node that name *is* the string's value — a password, a key, a request
//! body. For callers below admin those values are replaced by a placeholder with the string's
//! length, so the report keeps its structure, sizes, classes and property names.

use serde_json::Value;

/// V8 node types whose `name` is the value itself.
const STRING_NODE_TYPES: &[&str] = &["string", "concatenated string", "sliced string"];

/// The report with every string node's value hidden. Works on any report shape: an object
/// that is one node (it has an `id`) of a string type has its `name` replaced, wherever it is
/// nested; a class row (`(string)` with a count) names no value and stays.
pub fn hide_string_values(report: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut doc: Value = serde_json::from_slice(report)?;
    hide_in(&mut doc);
    serde_json::to_vec(&doc)
}

fn hide_in(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(hide_in),
        Value::Object(map) => {
            let is_string =
                map.get("node_type").and_then(Value::as_str).is_some_and(|t| STRING_NODE_TYPES.contains(&t));
            if is_string && map.contains_key("id") {
                if let Some(name) = map.get_mut("name") {
                    let len = name.as_str().map_or(0, |s| s.chars().count());
                    *name = Value::String(format!("(string value hidden: needs role admin; {len} chars)"));
                }
            }
            map.values_mut().for_each(hide_in);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_are_hidden_structure_is_kept() {
        let report = serde_json::json!({
            "top_objects": [{
                "id": 7, "class": "(string)", "name": "postgres://app:hunter2@db/orders", "node_type": "string",
                "retained_size": 64,
                "path": [
                    {"edge": "config", "id": 3, "class": "Object", "name": "", "node_type": "object"},
                    {"edge": "dsn", "id": 5, "class": "(concatenated string)", "name": "hunter2", "node_type": "concatenated string"}
                ]
            }, {"id": 9, "class": "Session", "name": "Session", "node_type": "object"}],
            "summary": [{"name": "(string)", "node_type": "string", "count": 3}]
        });
        let out = hide_string_values(&serde_json::to_vec(&report).expect("json")).expect("redact");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"edge\":\"dsn\"") && text.contains("\"name\":\"Session\""), "{text}");
        assert!(text.contains("32 chars") && text.contains("\"name\":\"(string)\""), "{text}");
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(hide_string_values(b"{not json").is_err());
    }
}
