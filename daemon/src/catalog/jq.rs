//! The part of JQ that Firehose's dynamic partitioning queries use (`MetadataExtraction`'s
//! `MetadataExtractionQuery`, engine `JQ-1.6`): an object of named paths,
//! `{customer: .customer_id, device: .type.device, year: .ts | strftime("%Y")}`.
//!
//! A path is `.name`, `."quoted name"`, `.["name"]` or `.[index]`, chained (`.a.b[0].c`); it may
//! be piped into `strftime("…")` (epoch seconds, UTC; `%Y %y %m %d %H %M %S %%`), `tostring`,
//! `ascii_downcase` or `ascii_upcase`. Everything else of JQ is refused when the delivery
//! stream is configured, by name, never evaluated as something else.

use serde_json::Value;

use super::firehose::Utc;

/// Most keys a query names (Firehose's limit on partition keys).
pub const KEYS_MAX: usize = 50;
/// Longest query.
pub const QUERY_MAX: usize = 4096;

/// A parsed query: each key's name and expression, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub keys: Vec<(String, Expr)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    path: Vec<Step>,
    filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Strftime(Vec<TimeToken>),
    ToString,
    Downcase,
    Upcase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeToken {
    Text(String),
    Year,
    ShortYear,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at {:?}", self.shown()))
        }
    }

    fn shown(&self) -> String {
        let rest = self.rest();
        match rest.char_indices().nth(24) {
            Some((end, _)) => format!("{}…", &rest[..end]),
            None if rest.is_empty() => "the end".into(),
            None => rest.to_owned(),
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_space();
        let rest = self.rest();
        let first = rest.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.at += end;
        Some(&rest[..end])
    }

    /// A JSON string literal.
    fn string(&mut self) -> Result<Option<String>, String> {
        self.skip_space();
        let rest = self.rest();
        if !rest.starts_with('"') {
            return Ok(None);
        }
        let mut escaped = false;
        for (index, c) in rest.char_indices().skip(1) {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('"', false) => {
                    let literal = &rest[..=index];
                    self.at += index + 1;
                    if literal.contains("\\(") {
                        return Err(format!("string interpolation in {literal} is not supported"));
                    }
                    return serde_json::from_str(literal).map(Some).map_err(|e| format!("the string {literal}: {e}"));
                }
                _ => escaped = false,
            }
        }
        Err("a string without its closing quote".into())
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.skip_space();
        if !self.rest().starts_with('.') {
            return Err(format!("expected a path such as .field at {:?}", self.shown()));
        }
        let mut path = Vec::new();
        loop {
            self.skip_space();
            let rest = self.rest();
            if rest.starts_with(".[") || (rest.starts_with('[') && !path.is_empty()) {
                self.at += if rest.starts_with('.') { 2 } else { 1 };
                path.push(match self.string()? {
                    Some(name) => Step::Field(name),
                    None => {
                        self.skip_space();
                        let rest = self.rest();
                        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
                        let index =
                            rest[..end].parse::<i64>().map_err(|_| format!("expected an index or a name in [] at {:?}", self.shown()))?;
                        self.at += end;
                        Step::Index(index)
                    }
                });
                self.expect("]")?;
            } else if let Some(after) = rest.strip_prefix('.') {
                self.at += 1;
                if after.starts_with('"') {
                    let name = self.string()?.unwrap_or_default();
                    path.push(Step::Field(name));
                } else {
                    // No skipping of spaces between the dot and its name.
                    let first = after.chars().next();
                    if !first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
                        if path.is_empty() {
                            return Err("the whole record (.) is not a partition key: name a field, such as .customer_id".into());
                        }
                        return Err(format!("expected a field name after . at {:?}", self.shown()));
                    }
                    let name = self.ident().unwrap_or_default().to_owned();
                    path.push(Step::Field(name));
                }
            } else {
                break;
            }
        }
        let mut filters = Vec::new();
        while self.eat("|") {
            let Some(name) = self.ident() else { return Err(format!("expected a function after | at {:?}", self.shown())) };
            filters.push(match name {
                "strftime" => {
                    self.expect("(")?;
                    let format = self.string()?.ok_or_else(|| "strftime takes a format string, such as \"%Y-%m-%d\"".to_owned())?;
                    self.expect(")")?;
                    Filter::Strftime(time_format(&format)?)
                }
                "tostring" => Filter::ToString,
                "ascii_downcase" => Filter::Downcase,
                "ascii_upcase" => Filter::Upcase,
                other => {
                    return Err(format!(
                        "the function {other} is not supported by this server (strftime, tostring, ascii_downcase and ascii_upcase are)"
                    ))
                }
            });
        }
        Ok(Expr { path, filters })
    }
}

fn time_format(format: &str) -> Result<Vec<TimeToken>, String> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let token = match chars.next() {
            Some('Y') => TimeToken::Year,
            Some('y') => TimeToken::ShortYear,
            Some('m') => TimeToken::Month,
            Some('d') => TimeToken::Day,
            Some('H') => TimeToken::Hour,
            Some('M') => TimeToken::Minute,
            Some('S') => TimeToken::Second,
            Some('%') => {
                text.push('%');
                continue;
            }
            Some(other) => return Err(format!("strftime's %{other} is not supported by this server (%Y %y %m %d %H %M %S and %% are)")),
            None => return Err("a strftime format ending in %".into()),
        };
        if !text.is_empty() {
            tokens.push(TimeToken::Text(std::mem::take(&mut text)));
        }
        tokens.push(token);
    }
    if !text.is_empty() {
        tokens.push(TimeToken::Text(text));
    }
    Ok(tokens)
}

/// Parses a `MetadataExtractionQuery`.
pub fn parse(text: &str) -> Result<Query, String> {
    if text.len() > QUERY_MAX {
        return Err(format!("the query is longer than {QUERY_MAX} characters"));
    }
    let mut parser = Parser { text, at: 0 };
    parser.expect("{")?;
    let mut keys: Vec<(String, Expr)> = Vec::new();
    if !parser.eat("}") {
        loop {
            let name = match parser.ident() {
                Some(name) => name.to_owned(),
                None => parser.string()?.ok_or_else(|| format!("expected a key name at {:?}", parser.shown()))?,
            };
            parser.expect(":")?;
            let expr = parser.expr()?;
            if keys.iter().any(|(known, _)| *known == name) {
                return Err(format!("the key {name} is named twice"));
            }
            keys.push((name, expr));
            if parser.eat("}") {
                break;
            }
            parser.expect(",")?;
        }
    }
    parser.skip_space();
    if !parser.rest().is_empty() {
        return Err(format!("unexpected {:?} after the query's object", parser.shown()));
    }
    if keys.is_empty() {
        return Err("the query names no keys".into());
    }
    if keys.len() > KEYS_MAX {
        return Err(format!("the query names more than {KEYS_MAX} keys"));
    }
    Ok(Query { keys })
}

impl Query {
    /// The value of key `name` for `record` (`None`: the query does not name it).
    pub fn evaluate_key(&self, name: &str, record: &Value) -> Option<Result<String, String>> {
        let (_, expr) = self.keys.iter().find(|(key, _)| key == name)?;
        Some(expr.evaluate(record).map_err(|why| format!("partition key {name}: {why}")))
    }
}

impl Expr {
    fn evaluate(&self, record: &Value) -> Result<String, String> {
        let mut value = record;
        for step in &self.path {
            value = match (step, value) {
                (Step::Field(name), Value::Object(map)) => map.get(name).unwrap_or(&Value::Null),
                (Step::Index(index), Value::Array(items)) => {
                    let at = if *index < 0 { items.len() as i64 + index } else { *index };
                    usize::try_from(at).ok().and_then(|at| items.get(at)).unwrap_or(&Value::Null)
                }
                (_, Value::Null) => &Value::Null,
                (Step::Field(name), other) => return Err(format!("cannot take .{name} of {}", kind(other))),
                (Step::Index(index), other) => return Err(format!("cannot take [{index}] of {}", kind(other))),
            };
        }
        let mut out = match value {
            Value::Null => return Err("the path is missing or null".into()),
            Value::String(text) => Scalar::Text(text.clone()),
            Value::Number(number) => Scalar::Number(number.clone()),
            Value::Bool(flag) => Scalar::Text(flag.to_string()),
            other => return Err(format!("the value is {}, not a string, number or boolean", kind(other))),
        };
        for filter in &self.filters {
            out = match (filter, out) {
                (Filter::Strftime(format), Scalar::Number(number)) => {
                    let seconds = number.as_f64().unwrap_or(0.0);
                    if !(0.0..=253_402_300_799.0).contains(&seconds) {
                        return Err(format!("strftime of {number}: not a time this server formats"));
                    }
                    Scalar::Text(strftime(format, Utc::of_ms((seconds * 1000.0) as u64)))
                }
                (Filter::Strftime(_), Scalar::Text(text)) => {
                    return Err(format!("strftime of the string {text:?} (it takes epoch seconds)"))
                }
                (Filter::ToString, value) => Scalar::Text(value.text()),
                (Filter::Downcase, Scalar::Text(text)) => Scalar::Text(text.to_ascii_lowercase()),
                (Filter::Upcase, Scalar::Text(text)) => Scalar::Text(text.to_ascii_uppercase()),
                (Filter::Downcase | Filter::Upcase, Scalar::Number(number)) => {
                    return Err(format!("ascii_downcase/ascii_upcase of the number {number}"))
                }
            };
        }
        Ok(out.text())
    }
}

enum Scalar {
    Text(String),
    Number(serde_json::Number),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Text(text) => text,
            Scalar::Number(number) => number.to_string(),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn strftime(format: &[TimeToken], utc: Utc) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for token in format {
        // Writing to a String cannot fail.
        let _ = match token {
            TimeToken::Text(text) => write!(out, "{text}"),
            TimeToken::Year => write!(out, "{:04}", utc.year),
            TimeToken::ShortYear => write!(out, "{:02}", utc.year % 100),
            TimeToken::Month => write!(out, "{:02}", utc.month),
            TimeToken::Day => write!(out, "{:02}", utc.day),
            TimeToken::Hour => write!(out, "{:02}", utc.hour),
            TimeToken::Minute => write!(out, "{:02}", utc.minute),
            TimeToken::Second => write!(out, "{:02}", utc.second),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every key's value, in the query's order.
    fn evaluate(query: &Query, record: &Value) -> Result<Vec<String>, String> {
        query.keys.iter().map(|(name, _)| query.evaluate_key(name, record).unwrap_or_else(|| Err("no such key".into()))).collect()
    }

    #[test]
    fn paths_and_functions_are_evaluated() {
        let query = parse(
            r#"{customer: .customer_id, "device type": .type.device, first: .tags[0], last: .tags[-1],
            year: .ts | strftime("%Y/%m"), n: .n | tostring, quoted: ."a b", bracket: .["c"], low: .name|ascii_downcase}"#,
        )
        .unwrap();
        let record = json!({"customer_id": "c-1", "type": {"device": "phone"}, "tags": ["x", "y", "z"], "ts": 1796651129,
            "n": 42, "a b": true, "c": 1.5, "name": "MiXed"});
        assert_eq!(evaluate(&query, &record).unwrap(), ["c-1", "phone", "x", "z", "2026/12", "42", "true", "1.5", "mixed"]);
        assert_eq!(query.keys[1].0, "device type");
    }

    #[test]
    fn missing_null_and_composite_values_fail_by_key() {
        let query = parse("{a: .a.b}").unwrap();
        assert!(evaluate(&query, &json!({})).unwrap_err().contains("partition key a: the path is missing"));
        assert!(evaluate(&query, &json!({"a": {"b": null}})).unwrap_err().contains("missing or null"));
        assert!(evaluate(&query, &json!({"a": {"b": [1]}})).unwrap_err().contains("an array"));
        assert!(evaluate(&query, &json!({"a": "text"})).unwrap_err().contains("cannot take .b of a string"));
        assert!(evaluate(&parse("{t: .t | strftime(\"%Y\")}").unwrap(), &json!({"t": "2026"})).unwrap_err().contains("epoch seconds"));
    }

    #[test]
    fn what_is_not_understood_is_refused_by_name() {
        assert!(parse("{a: .a | length}").unwrap_err().contains("length is not supported"));
        assert!(parse("{a: .}").unwrap_err().contains("whole record"));
        assert!(parse("{a: .a, a: .b}").unwrap_err().contains("named twice"));
        assert!(parse("{}").unwrap_err().contains("no keys"));
        assert!(parse("{a: .a} extra").unwrap_err().contains("after the query"));
        assert!(parse("{a: .a | strftime(\"%Z\")}").unwrap_err().contains("%Z"));
        assert!(parse("{a: \"x\\(.y)\"}").is_err());
        assert!(parse("{a .a}").unwrap_err().contains("expected \":\""));
    }
}
