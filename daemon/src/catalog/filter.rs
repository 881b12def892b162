//! SNS subscription filter policies: compiled once when a subscription is made or
//! changed, then matched against every published message without allocating.
//!
//! A policy is a JSON object whose keys must all match (AND); each key holds an array
//! of conditions of which any may match (OR), or, in `MessageBody` scope, a nested
//! object. `$or` holds alternative objects. A message is looked at through a `Message`:
//! its attributes (`MessageAttributes` scope) or its body parsed once per publish
//! (`MessageBody` scope), shared by every subscription of the topic.

use std::net::IpAddr;

use serde_json::{Map, Value};
use sluice_protocol::limits::{FILTER_POLICY_BYTES_MAX, FILTER_POLICY_COMBINATIONS_MAX, FILTER_POLICY_KEYS_MAX, FILTER_POLICY_NUMBER_MAX};
use sluice_protocol::{ErrorCode, MessageAttribute, OpError};

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, OpError> {
        match text {
            "MessageAttributes" => Ok(Scope::MessageAttributes),
            "MessageBody" => Ok(Scope::MessageBody),
            other => Err(invalid_parameter(format!(
                "Invalid parameter: Attributes Reason: FilterPolicyScope: Invalid value [{other}]. Please use either MessageBody or MessageAttributes"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::MessageAttributes => "MessageAttributes",
            Scope::MessageBody => "MessageBody",
        }
    }
}

/// A compiled filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    root: Node,
}

/// An object of the policy: every key must match, and one branch of each `$or`.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    keys: Vec<(String, Field)>,
    any_of: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Conditions(Vec<Condition>),
    Nested(Node),
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(String),
    Number(f64),
    Bool(bool),
    Null,
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Exists(bool),
    Cidr(Cidr),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<f64>),
    Prefix(String),
    Suffix(String),
}

/// Bounds of a numeric condition; a missing bound is open.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    lower: Option<(f64, bool)>,
    upper: Option<(f64, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Cidr {
    network: IpAddr,
    bits: u8,
}

/// One value a key of the message holds.
#[derive(Debug, Clone, Copy)]
pub enum Scalar<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Null,
}

/// A published message as filter policies see it.
pub enum Message<'a> {
    Attributes {
        attributes: &'a [MessageAttribute],
        arrays: &'a [(usize, Vec<Value>)],
    },
    /// The body parsed as JSON; `None` when it is not a JSON object (nothing matches then).
    Body(Option<&'a Map<String, Value>>),
}

/// Parses the `String.Array` attributes of a message once per publish (elements that are
/// not strings, numbers, booleans or null are skipped).
pub fn parse_arrays(attributes: &[MessageAttribute]) -> Vec<(usize, Vec<Value>)> {
    attributes
        .iter()
        .enumerate()
        .filter(|(_, attribute)| attribute.data_type == "String.Array")
        .filter_map(|(index, attribute)| match serde_json::from_str::<Value>(attribute.string_value.as_deref()?) {
            Ok(Value::Array(items)) => Some((index, items)),
            _ => None,
        })
        .collect()
}

fn invalid_parameter(message: String) -> OpError {
    OpError::new(ErrorCode::InvalidParameter, message)
}

fn invalid(reason: impl std::fmt::Display) -> OpError {
    invalid_parameter(format!("Invalid parameter: FilterPolicy: {reason}"))
}

impl FilterPolicy {
    /// Checks and compiles a policy. `None` for an empty one (`{}` or no text), which
    /// lets every message through.
    pub fn compile(text: &str, scope: Scope) -> Result<Option<FilterPolicy>, OpError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        if text.len() > FILTER_POLICY_BYTES_MAX {
            return Err(invalid(format!("Filter policy is too large (more than {FILTER_POLICY_BYTES_MAX} bytes)")));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| invalid(format!("failed to parse JSON: {e}")))?;
        let Value::Object(object) = value else { return Err(invalid("Filter policy must be a JSON object")) };
        if object.is_empty() {
            return Ok(None);
        }
        let root = compile_node(&object, scope, 0)?;
        let mut paths = Vec::new();
        root.key_paths("", &mut paths);
        paths.sort();
        paths.dedup();
        if paths.len() > FILTER_POLICY_KEYS_MAX {
            return Err(invalid(format!("Filter policy can not have more than {FILTER_POLICY_KEYS_MAX} keys")));
        }
        let combinations = root.combinations();
        if combinations > FILTER_POLICY_COMBINATIONS_MAX {
            return Err(invalid(format!(
                "Filter policy is too complex: {combinations} combinations of values, at most {FILTER_POLICY_COMBINATIONS_MAX}"
            )));
        }
        Ok(Some(FilterPolicy { root }))
    }

    /// Whether a message passes.
    pub fn matches(&self, message: &Message<'_>) -> bool {
        match message {
            Message::Attributes { attributes, arrays } => self.root.matches_attributes(attributes, arrays),
            Message::Body(None) => false,
            Message::Body(Some(object)) => self.root.matches_body(object),
        }
    }
}

fn compile_node(object: &Map<String, Value>, scope: Scope, depth: usize) -> Result<Node, OpError> {
    if depth > 16 {
        return Err(invalid("Filter policy is nested too deeply"));
    }
    let mut node = Node { keys: Vec::new(), any_of: Vec::new() };
    for (key, value) in object {
        if key == "$or" {
            let Value::Array(branches) = value else { return Err(invalid("$or must be an array of objects")) };
            if branches.len() < 2 {
                return Err(invalid("$or must hold at least two objects"));
            }
            let mut compiled = Vec::with_capacity(branches.len());
            for branch in branches {
                let Value::Object(branch) = branch else { return Err(invalid("$or must be an array of objects")) };
                if branch.is_empty() {
                    return Err(invalid("an object of $or is empty"));
                }
                compiled.push(compile_node(branch, scope, depth + 1)?);
            }
            node.any_of.push(compiled);
            continue;
        }
        let field = match value {
            Value::Array(conditions) => {
                if conditions.is_empty() {
                    return Err(invalid(format!("Empty arrays are not allowed (key {key:?})")));
                }
                Field::Conditions(conditions.iter().map(|c| compile_condition(key, c)).collect::<Result<_, _>>()?)
            }
            Value::Object(nested) => {
                if scope == Scope::MessageAttributes {
                    return Err(invalid("Filter policy scope MessageAttributes does not support nested filter policy"));
                }
                if nested.is_empty() {
                    return Err(invalid(format!("Empty objects are not allowed (key {key:?})")));
                }
                Field::Nested(compile_node(nested, scope, depth + 1)?)
            }
            _ => return Err(invalid(format!("Match value must be String, number, true, false, or null (key {key:?} must hold an array)"))),
        };
        node.keys.push((key.clone(), field));
    }
    Ok(node)
}

fn check_number(key: &str, number: Option<f64>) -> Result<f64, OpError> {
    match number {
        Some(n) if n.is_finite() && n.abs() <= FILTER_POLICY_NUMBER_MAX => Ok(n),
        _ => Err(invalid(format!("Value of {key} must be a number between -1e9 and 1e9"))),
    }
}

fn operator_string(key: &str, operator: &str, value: &Value) -> Result<String, OpError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        _ => Err(invalid(format!("{operator} match pattern must be a string (key {key:?})"))),
    }
}

fn compile_condition(key: &str, value: &Value) -> Result<Condition, OpError> {
    let object = match value {
        Value::String(text) => return Ok(Condition::Exact(text.clone())),
        Value::Number(number) => return Ok(Condition::Number(check_number(key, number.as_f64())?)),
        Value::Bool(b) => return Ok(Condition::Bool(*b)),
        Value::Null => return Ok(Condition::Null),
        Value::Array(_) => return Err(invalid(format!("Match value must be String, number, true, false, or null (key {key:?})"))),
        Value::Object(object) => object,
    };
    if object.len() != 1 {
        return Err(invalid(format!("Only one operator is allowed per condition (key {key:?})")));
    }
    let (operator, operand) = object.iter().next().expect("one entry");
    Ok(match operator.as_str() {
        "prefix" => Condition::Prefix(operator_string(key, "prefix", operand)?),
        "suffix" => Condition::Suffix(operator_string(key, "suffix", operand)?),
        "equals-ignore-case" => Condition::EqualsIgnoreCase(operator_string(key, "equals-ignore-case", operand)?),
        "exists" => match operand {
            Value::Bool(b) => Condition::Exists(*b),
            _ => return Err(invalid(format!("exists match pattern must be either true or false (key {key:?})"))),
        },
        "cidr" => Condition::Cidr(
            parse_cidr(&operator_string(key, "cidr", operand)?).ok_or_else(|| invalid(format!("Malformed CIDR (key {key:?})")))?,
        ),
        "numeric" => Condition::Numeric(compile_range(key, operand)?),
        "anything-but" => Condition::AnythingBut(compile_anything_but(key, operand)?),
        other => return Err(invalid(format!("Unrecognized match type {other}"))),
    })
}

fn compile_anything_but(key: &str, operand: &Value) -> Result<AnythingBut, OpError> {
    match operand {
        Value::String(text) => Ok(AnythingBut::Strings(vec![text.clone()])),
        Value::Number(number) => Ok(AnythingBut::Numbers(vec![check_number(key, number.as_f64())?])),
        Value::Array(items) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                Ok(AnythingBut::Strings(items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()))
            } else if items.iter().all(Value::is_number) {
                Ok(AnythingBut::Numbers(items.iter().map(|i| check_number(key, i.as_f64())).collect::<Result<_, _>>()?))
            } else {
                Err(invalid(format!("Inside anything but list, mixed types are not allowed (key {key:?})")))
            }
        }
        Value::Object(inner) if inner.len() == 1 => {
            let (operator, value) = inner.iter().next().expect("one entry");
            match operator.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(operator_string(key, "prefix", value)?)),
                "suffix" => Ok(AnythingBut::Suffix(operator_string(key, "suffix", value)?)),
                other => Err(invalid(format!("Unsupported anything-but pattern: {other}"))),
            }
        }
        _ => Err(invalid(format!("anything-but must hold a string, a number, a non-empty list or a prefix/suffix (key {key:?})"))),
    }
}

fn compile_range(key: &str, operand: &Value) -> Result<Range, OpError> {
    let malformed = || invalid(format!("Value of numeric must be an array of operator-value pairs (key {key:?})"));
    let Value::Array(items) = operand else { return Err(malformed()) };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(malformed());
    }
    let mut range = Range { lower: None, upper: None };
    let mut equal = None;
    for pair in items.chunks(2) {
        let operator = pair[0].as_str().ok_or_else(malformed)?;
        let value = check_number(key, pair[1].as_f64())?;
        match operator {
            "=" if items.len() == 2 => equal = Some(value),
            ">" | ">=" if range.lower.is_none() && range.upper.is_none() => range.lower = Some((value, operator == ">=")),
            "<" | "<=" if range.upper.is_none() => range.upper = Some((value, operator == "<=")),
            _ => return Err(invalid(format!("Bad numeric range operator {operator:?} (key {key:?})"))),
        }
    }
    if let Some(value) = equal {
        return Ok(Range { lower: Some((value, true)), upper: Some((value, true)) });
    }
    if let (Some((low, _)), Some((high, _))) = (range.lower, range.upper) {
        if low >= high {
            return Err(invalid(format!("Bottom must be less than top (key {key:?})")));
        }
    }
    Ok(range)
}

fn parse_cidr(text: &str) -> Option<Cidr> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let network: IpAddr = address.parse().ok()?;
    let width = if network.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(width);
    (bits <= width).then_some(Cidr { network, bits })
}

impl Cidr {
    fn contains(&self, address: IpAddr) -> bool {
        let masked = |a: u128, width: u32| if self.bits == 0 { 0 } else { a >> (width - self.bits as u32) };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => masked(u32::from(network) as u128, 32) == masked(u32::from(address) as u128, 32),
            (IpAddr::V6(network), IpAddr::V6(address)) => masked(u128::from(network), 128) == masked(u128::from(address), 128),
            _ => false,
        }
    }
}

impl Range {
    fn contains(&self, n: f64) -> bool {
        let above = self.lower.is_none_or(|(bound, inclusive)| if inclusive { n >= bound } else { n > bound });
        let below = self.upper.is_none_or(|(bound, inclusive)| if inclusive { n <= bound } else { n < bound });
        above && below
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// The values one key of a message holds.
#[derive(Clone, Copy)]
enum Values<'a> {
    Absent,
    /// Present without a comparable value (a Binary attribute).
    Opaque,
    One(Scalar<'a>),
    /// An array (String.Array attribute, or an array in the body): any element may match.
    Many(&'a [Value]),
}

impl<'a> Values<'a> {
    fn present(&self) -> bool {
        !matches!(self, Values::Absent)
    }

    fn each(&self) -> impl Iterator<Item = Scalar<'a>> + 'a {
        let (one, many): (Option<Scalar<'a>>, &'a [Value]) = match *self {
            Values::One(scalar) => (Some(scalar), &[]),
            Values::Many(items) => (None, items),
            Values::Absent | Values::Opaque => (None, &[]),
        };
        one.into_iter().chain(many.iter().filter_map(json_scalar))
    }
}

impl Condition {
    /// Whether a key holding `values` satisfies this condition.
    fn matches(&self, values: Values<'_>) -> bool {
        match self {
            Condition::Exists(wanted) => values.present() == *wanted,
            Condition::AnythingBut(but) => {
                let mut comparable = values.each().peekable();
                comparable.peek().is_some() && comparable.all(|value| but.allows(&value))
            }
            _ => values.each().any(|value| self.matches_one(&value)),
        }
    }

    fn matches_one(&self, value: &Scalar<'_>) -> bool {
        match (self, value) {
            (Condition::Exact(expected), Scalar::Str(text)) => expected == text,
            (Condition::Number(expected), Scalar::Num(n)) => expected == n,
            (Condition::Bool(expected), Scalar::Bool(b)) => expected == b,
            (Condition::Null, Scalar::Null) => true,
            (Condition::Prefix(prefix), Scalar::Str(text)) => text.starts_with(prefix.as_str()),
            (Condition::Suffix(suffix), Scalar::Str(text)) => text.ends_with(suffix.as_str()),
            (Condition::EqualsIgnoreCase(expected), Scalar::Str(text)) => eq_ignore_case(expected, text),
            (Condition::Numeric(range), Scalar::Num(n)) => range.contains(*n),
            (Condition::Cidr(cidr), Scalar::Str(text)) => text.parse::<IpAddr>().is_ok_and(|address| cidr.contains(address)),
            _ => false,
        }
    }
}

impl AnythingBut {
    fn allows(&self, value: &Scalar<'_>) -> bool {
        match (self, value) {
            (AnythingBut::Strings(listed), Scalar::Str(text)) => !listed.iter().any(|l| l == text),
            (AnythingBut::Numbers(listed), Scalar::Num(n)) => !listed.contains(n),
            (AnythingBut::Prefix(prefix), Scalar::Str(text)) => !text.starts_with(prefix.as_str()),
            (AnythingBut::Suffix(suffix), Scalar::Str(text)) => !text.ends_with(suffix.as_str()),
            (AnythingBut::Prefix(_) | AnythingBut::Suffix(_), _) => false,
            _ => true,
        }
    }
}

/// The values a message attribute named `key` holds.
fn attribute_values<'a>(attributes: &'a [MessageAttribute], arrays: &'a [(usize, Vec<Value>)], key: &str) -> Values<'a> {
    let Some(index) = attributes.iter().position(|a| a.name == key) else { return Values::Absent };
    let attribute = &attributes[index];
    let text = attribute.string_value.as_deref().unwrap_or_default();
    if attribute.data_type == "String.Array" {
        return arrays.iter().find(|(i, _)| *i == index).map_or(Values::Opaque, |(_, items)| Values::Many(items));
    }
    match attribute.data_type.split('.').next().unwrap_or_default() {
        "String" => Values::One(Scalar::Str(text)),
        "Number" => text.trim().parse::<f64>().map_or(Values::Opaque, |n| Values::One(Scalar::Num(n))),
        // Binary attributes never match a value (but they exist).
        _ => Values::Opaque,
    }
}

fn json_scalar(value: &Value) -> Option<Scalar<'_>> {
    match value {
        Value::String(text) => Some(Scalar::Str(text)),
        Value::Number(number) => number.as_f64().map(Scalar::Num),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Null => Some(Scalar::Null),
        _ => None,
    }
}

impl Node {
    fn key_paths(&self, prefix: &str, out: &mut Vec<String>) {
        for (key, field) in &self.keys {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match field {
                Field::Conditions(_) => out.push(path),
                Field::Nested(node) => node.key_paths(&path, out),
            }
        }
        for branches in &self.any_of {
            for branch in branches {
                branch.key_paths(prefix, out);
            }
        }
    }

    fn combinations(&self) -> usize {
        let mut total: usize = 1;
        for (_, field) in &self.keys {
            let here = match field {
                Field::Conditions(conditions) => conditions.len(),
                Field::Nested(node) => node.combinations(),
            };
            total = total.saturating_mul(here);
        }
        for branches in &self.any_of {
            total = total.saturating_mul(branches.iter().map(Node::combinations).fold(0usize, usize::saturating_add));
        }
        total
    }

    /// Attribute scope: every key's conditions against that attribute's values.
    fn matches_attributes(&self, attributes: &[MessageAttribute], arrays: &[(usize, Vec<Value>)]) -> bool {
        self.keys.iter().all(|(key, field)| match field {
            Field::Conditions(conditions) => {
                let values = attribute_values(attributes, arrays, key);
                conditions.iter().any(|c| c.matches(values))
            }
            Field::Nested(_) => false,
        }) && self.any_of.iter().all(|branches| branches.iter().any(|branch| branch.matches_attributes(attributes, arrays)))
    }

    /// Body scope: nested objects match nested objects; arrays match if any element does.
    fn matches_body(&self, object: &Map<String, Value>) -> bool {
        self.keys.iter().all(|(key, field)| {
            let value = object.get(key);
            match field {
                Field::Nested(node) => match value {
                    Some(Value::Object(inner)) => node.matches_body(inner),
                    Some(Value::Array(items)) => items.iter().any(|item| matches!(item, Value::Object(inner) if node.matches_body(inner))),
                    _ => node.matches_absent(),
                },
                Field::Conditions(conditions) => {
                    let values = match value {
                        None => Values::Absent,
                        Some(Value::Array(items)) => Values::Many(items),
                        Some(Value::Object(_)) => Values::Opaque,
                        Some(scalar) => json_scalar(scalar).map_or(Values::Opaque, Values::One),
                    };
                    conditions.iter().any(|c| c.matches(values))
                }
            }
        }) && self.any_of.iter().all(|branches| branches.iter().any(|branch| branch.matches_body(object)))
    }

    /// A nested policy whose object is missing matches only if every leaf accepts absence.
    fn matches_absent(&self) -> bool {
        self.keys.iter().all(|(_, field)| match field {
            Field::Conditions(conditions) => conditions.iter().any(|c| c.matches(Values::Absent)),
            Field::Nested(node) => node.matches_absent(),
        }) && self.any_of.iter().all(|branches| branches.iter().any(Node::matches_absent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(items: &[(&str, &str, &str)]) -> Vec<MessageAttribute> {
        items.iter().map(|(name, kind, value)| MessageAttribute::string(*name, *kind, *value)).collect()
    }

    fn on_attributes(policy: &str, attributes: &[MessageAttribute]) -> bool {
        let policy = FilterPolicy::compile(policy, Scope::MessageAttributes).unwrap().unwrap();
        let arrays = parse_arrays(attributes);
        policy.matches(&Message::Attributes { attributes, arrays: &arrays })
    }

    fn on_body(policy: &str, body: &str) -> bool {
        let policy = FilterPolicy::compile(policy, Scope::MessageBody).unwrap().unwrap();
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        policy.matches(&Message::Body(parsed.as_ref().and_then(Value::as_object)))
    }

    fn rejected(policy: &str, scope: Scope) -> String {
        let error = FilterPolicy::compile(policy, scope).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParameter, "{policy}");
        error.message
    }

    #[test]
    fn every_operator_matches_and_misses_on_attributes() {
        let red = attrs(&[("color", "String", "Red"), ("price", "Number", "301.5"), ("ip", "String", "10.0.0.7")]);
        let cases: &[(&str, bool)] = &[
            (r#"{"color":["Red","blue"]}"#, true),
            (r#"{"color":["red"]}"#, false),
            (r#"{"color":[{"prefix":"Re"}]}"#, true),
            (r#"{"color":[{"prefix":"re"}]}"#, false),
            (r#"{"color":[{"suffix":"ed"}]}"#, true),
            (r#"{"color":[{"suffix":"x"}]}"#, false),
            (r#"{"color":[{"equals-ignore-case":"RED"}]}"#, true),
            (r#"{"color":[{"equals-ignore-case":"REDS"}]}"#, false),
            (r#"{"color":[{"anything-but":["blue","green"]}]}"#, true),
            (r#"{"color":[{"anything-but":["Red"]}]}"#, false),
            (r#"{"color":[{"anything-but":"blue"}]}"#, true),
            (r#"{"color":[{"anything-but":{"prefix":"R"}}]}"#, false),
            (r#"{"color":[{"anything-but":{"prefix":"B"}}]}"#, true),
            (r#"{"color":[{"anything-but":{"suffix":"d"}}]}"#, false),
            (r#"{"price":[{"numeric":["=",3.015e2]}]}"#, true),
            (r#"{"price":[{"numeric":[">",0,"<=",301.5]}]}"#, true),
            (r#"{"price":[{"numeric":[">",301.5]}]}"#, false),
            (r#"{"price":[{"anything-but":[100,500]}]}"#, true),
            (r#"{"price":[{"anything-but":[301.5]}]}"#, false),
            (r#"{"price":[301.5]}"#, true),
            (r#"{"color":[{"exists":true}]}"#, true),
            (r#"{"size":[{"exists":true}]}"#, false),
            (r#"{"size":[{"exists":false}]}"#, true),
            (r#"{"color":[{"exists":false}]}"#, false),
            (r#"{"size":["x"]}"#, false),
            (r#"{"size":[{"anything-but":"x"}]}"#, false),
            (r#"{"ip":[{"cidr":"10.0.0.0/24"}]}"#, true),
            (r#"{"ip":[{"cidr":"10.0.1.0/24"}]}"#, false),
            (r#"{"color":["Red"],"price":[{"numeric":["<",100]}]}"#, false),
            (r#"{"$or":[{"color":["blue"]},{"price":[{"numeric":[">",300]}]}]}"#, true),
            (r#"{"$or":[{"color":["blue"]},{"price":[{"numeric":[">",400]}]}]}"#, false),
        ];
        for (policy, expected) in cases {
            assert_eq!(on_attributes(policy, &red), *expected, "{policy}");
        }
    }

    #[test]
    fn string_arrays_match_any_element_and_anything_but_needs_none_listed() {
        let sports = attrs(&[("sport", "String.Array", r#"["rugby","tennis"]"#)]);
        assert!(on_attributes(r#"{"sport":["tennis"]}"#, &sports));
        assert!(!on_attributes(r#"{"sport":["golf"]}"#, &sports));
        assert!(!on_attributes(r#"{"sport":[{"anything-but":["rugby"]}]}"#, &sports));
        assert!(on_attributes(r#"{"sport":[{"anything-but":["golf"]}]}"#, &sports));
    }

    #[test]
    fn binary_attributes_exist_but_never_match_a_value() {
        let binary = vec![MessageAttribute::binary("blob", vec![1u8, 2])];
        assert!(on_attributes(r#"{"blob":[{"exists":true}]}"#, &binary));
        assert!(!on_attributes(r#"{"blob":[{"prefix":""}]}"#, &binary));
        assert!(!on_attributes(r#"{"blob":[{"anything-but":"x"}]}"#, &binary));
    }

    #[test]
    fn body_scope_matches_nested_keys_arrays_and_literals() {
        let body = r#"{"order":{"status":"paid","total":120,"tags":["gift","rush"],"note":null},"vip":true,"ip":"2001:db8::1"}"#;
        let cases: &[(&str, bool)] = &[
            (r#"{"order":{"status":["paid"]}}"#, true),
            (r#"{"order":{"status":["open"]}}"#, false),
            (r#"{"order":{"total":[{"numeric":[">=",100,"<",200]}]}}"#, true),
            (r#"{"order":{"total":[120]}}"#, true),
            (r#"{"order":{"tags":["rush"]}}"#, true),
            (r#"{"order":{"tags":[{"anything-but":["gift"]}]}}"#, false),
            (r#"{"order":{"note":[null]}}"#, true),
            (r#"{"vip":[true]}"#, true),
            (r#"{"vip":[false]}"#, false),
            (r#"{"ip":[{"cidr":"2001:db8::/32"}]}"#, true),
            (r#"{"order":{"missing":[{"exists":false}]}}"#, true),
            (r#"{"order":{"status":["paid"]},"$or":[{"vip":[false]},{"order":{"total":[120]}}]}"#, true),
        ];
        for (policy, expected) in cases {
            assert_eq!(on_body(policy, body), *expected, "{policy}");
        }
        assert!(!on_body(r#"{"vip":[true]}"#, "not json"), "a body that is not a JSON object never matches");
    }

    #[test]
    fn invalid_policies_are_refused_with_reasons() {
        let attributes = Scope::MessageAttributes;
        assert!(rejected("not json", attributes).contains("parse"));
        assert!(rejected("[]", attributes).contains("object"));
        assert!(rejected(r#"{"a":[]}"#, attributes).contains("Empty"));
        assert!(rejected(r#"{"a":"x"}"#, attributes).contains("array"));
        assert!(rejected(r#"{"a":{"b":["x"]}}"#, attributes).contains("nested"));
        assert!(rejected(r#"{"a":[{"bogus":1}]}"#, attributes).contains("Unrecognized"));
        assert!(rejected(r#"{"a":[{"numeric":[">",5,"<",1]}]}"#, attributes).contains("Bottom"));
        assert!(rejected(r#"{"a":[{"numeric":["=",2e9]}]}"#, attributes).contains("1e9"));
        assert!(rejected(r#"{"a":[{"exists":"yes"}]}"#, attributes).contains("exists"));
        assert!(rejected(r#"{"a":[{"cidr":"10.0.0.0/40"}]}"#, attributes).contains("CIDR"));
        assert!(rejected(r#"{"a":[{"anything-but":["x",1]}]}"#, attributes).contains("mixed"));
        assert!(rejected(r#"{"$or":[{"a":["x"]}]}"#, attributes).contains("two"));
        assert!(rejected(r#"{"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}"#, attributes).contains("5 keys"));
        let wide: Vec<String> = (0..13).map(|i| format!("\"v{i}\"")).collect();
        let wide = wide.join(",");
        assert!(rejected(&format!(r#"{{"a":[{wide}],"b":[{wide}]}}"#), attributes).contains("combinations"));
        assert_eq!(FilterPolicy::compile("{}", attributes).unwrap(), None);
        assert!(FilterPolicy::compile(r#"{"a":{"b":["x"]}}"#, Scope::MessageBody).unwrap().is_some());
    }
}
