//! The query shorthand for curl users: `?w=256&h=256&fit=cover&format=webp&q=80` means one
//! output named `default` with that one resize.

use serde_json::{json, Map, Value};

use super::{Spec, SpecError};

/// Query parameters the shorthand reads, with the spec field each one fills.
const PARAMS: &[(&str, &str)] = &[
    ("w", "outputs[0].ops[0].width"),
    ("h", "outputs[0].ops[0].height"),
    ("fit", "outputs[0].ops[0].fit"),
    ("filter", "outputs[0].ops[0].filter"),
    ("enlarge", "outputs[0].ops[0].enlarge"),
    ("gravity", "outputs[0].ops[0].gravity"),
    ("background", "outputs[0].ops[0].background"),
    ("format", "outputs[0].format"),
    ("q", "outputs[0].quality"),
    ("lossless", "outputs[0].lossless"),
    ("animated", "outputs[0].animated"),
    ("placeholder", "placeholder"),
    ("priority", "priority"),
];

/// The name of the single output a shorthand spec makes.
pub const SHORTHAND_OUTPUT: &str = "default";

impl Spec {
    /// Whether `key` is a shorthand query parameter.
    pub fn is_shorthand_key(key: &str) -> bool {
        PARAMS.iter().any(|(param, _)| *param == key)
    }

    /// Builds a spec from shorthand query pairs; errors name the query parameter.
    pub fn from_shorthand<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Spec, SpecError> {
        let mut resize = Map::new();
        let mut output = Map::new();
        let mut spec = Map::new();
        output.insert("name".into(), json!(SHORTHAND_OUTPUT));
        for (key, raw) in pairs {
            let (target, field) = match key {
                "w" => (&mut resize, "width"),
                "h" => (&mut resize, "height"),
                "fit" | "filter" | "gravity" | "background" | "enlarge" => (&mut resize, key),
                "format" | "lossless" | "animated" => (&mut output, key),
                "q" => (&mut output, "quality"),
                "placeholder" | "priority" => (&mut spec, key),
                _ => {
                    let known: Vec<&str> = PARAMS.iter().map(|(p, _)| *p).collect();
                    return Err(SpecError::new(
                        key,
                        format!(
                            "unknown parameter (expected spec or one of: {})",
                            known.join(", ")
                        ),
                    ));
                }
            };
            let value = match field {
                "width" | "height" | "quality" => match raw.parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Err(SpecError::new(key, "must be a whole number")),
                },
                "enlarge" | "lossless" | "animated" => match raw {
                    "true" | "1" => json!(true),
                    "false" | "0" => json!(false),
                    _ => return Err(SpecError::new(key, "must be true or false")),
                },
                _ => json!(raw),
            };
            if target.insert(field.to_owned(), value).is_some() {
                return Err(SpecError::new(key, "is given twice"));
            }
        }
        if !resize.is_empty() {
            resize.insert("op".into(), json!("resize"));
            output.insert("ops".into(), json!([Value::Object(resize)]));
        }
        spec.insert("outputs".into(), json!([Value::Object(output)]));

        Spec::from_json_value(&Value::Object(spec)).map_err(|e| {
            // Name the query parameter, not the spec field it became.
            let param = PARAMS
                .iter()
                .find(|(_, field)| *field == e.field)
                .map(|(param, _)| *param);
            match param {
                Some(param) => SpecError::new(param, e.message),
                None if e.field == "outputs[0].ops[0]" => SpecError::new("w", e.message),
                None => e,
            }
        })
    }
}
