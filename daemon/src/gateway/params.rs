//! Request parameters as one JSON-shaped tree, whichever protocol carried them.
//!
//! JSON protocols give the tree directly. Query-protocol forms (`Attribute.1.Name=…`,
//! `Tags.member.2.Key=…`, `Attributes.entry.1.key=…`) are folded into the same shape
//! (`{"Attributes": {…}}`, `{"Tags": [{…}]}`), so each action is read by one function
//! whatever the protocol. Readers are lenient about scalars the way the Query protocol
//! needs (`"10"` reads as a number, `"true"` as a boolean) and strict about everything else:
//! a wrong type is a typed error naming the parameter, never a panic or a silent default.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};
use sluice_protocol::{ErrorCode, KeyValues, MessageAttribute, OpError};

/// Most dot-separated parts one Query parameter name may have (the deepest served, a
/// GetMetricData query's dimension `MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name`, has 9).
const QUERY_NAME_PARTS_MAX: usize = 10;

/// Which error codes a service uses for absent and malformed parameters.
#[derive(Clone, Copy)]
pub struct Faults {
    pub missing: ErrorCode,
    pub invalid: ErrorCode,
}

pub const SQS_FAULTS: Faults = Faults { missing: ErrorCode::MissingParameter, invalid: ErrorCode::InvalidParameterValue };
pub const SNS_FAULTS: Faults = Faults { missing: ErrorCode::InvalidParameter, invalid: ErrorCode::InvalidParameter };
pub const KINESIS_FAULTS: Faults = Faults { missing: ErrorCode::Validation, invalid: ErrorCode::InvalidArgument };

/// What an action's parsing looked at: each structure handed out (`object`, `objects`,
/// message attributes) and each member read, by the address of its map. Whatever a request
/// carries that its action never looked at would be dropped without a word: `unread` finds it,
/// and the gateway refuses the request naming it.
#[derive(Default)]
pub struct Reads {
    /// (map, key) by address: the key is the tree's own `String`, so noting a read allocates nothing.
    read: std::cell::RefCell<std::collections::HashSet<(usize, usize)>>,
    structures: std::cell::RefCell<std::collections::HashSet<usize>>,
}

fn address(map: &Map<String, Value>) -> usize {
    map as *const Map<String, Value> as usize
}

impl Reads {
    /// The first member of `root` (or of a structure in it that parsing handed out) that
    /// parsing never read, as a dotted path; `skip` names top-level members that belong to the
    /// protocol, not the action.
    pub fn unread(&self, root: &Map<String, Value>, skip: impl Fn(&str) -> bool) -> Option<String> {
        let read = self.read.borrow();
        let structures = self.structures.borrow();
        let mut stack: Vec<(&Map<String, Value>, String)> = vec![(root, String::new())];
        while let Some((map, path)) = stack.pop() {
            for (name, value) in map {
                if path.is_empty() && skip(name) {
                    continue;
                }
                let at = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                if !read.contains(&(address(map), name.as_ptr() as usize)) {
                    return Some(at);
                }
                match value {
                    Value::Object(child) if structures.contains(&address(child)) => stack.push((child, at)),
                    Value::Object(child) => {
                        // A map of structures (message attributes): each handed out on its own.
                        for (key, item) in child {
                            if let Value::Object(item) = item {
                                if structures.contains(&address(item)) {
                                    stack.push((item, format!("{at}.{key}")));
                                }
                            }
                        }
                    }
                    Value::Array(items) => {
                        for (index, item) in items.iter().enumerate() {
                            if let Value::Object(item) = item {
                                if structures.contains(&address(item)) {
                                    stack.push((item, format!("{at}.{}", index + 1)));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// One object of parameters and how to complain about it.
#[derive(Clone, Copy)]
pub struct Params<'a> {
    map: &'a Map<String, Value>,
    faults: Faults,
    reads: Option<&'a Reads>,
}

impl<'a> Params<'a> {
    /// Parameters whose reads nobody notes (unit tests of the readers).
    #[cfg(test)]
    pub fn new(map: &'a Map<String, Value>, faults: Faults) -> Params<'a> {
        Params { map, faults, reads: None }
    }

    /// Parameters whose reads are noted in `reads` (for `Reads::unread`).
    pub fn tracked(map: &'a Map<String, Value>, faults: Faults, reads: &'a Reads) -> Params<'a> {
        Params { map, faults, reads: Some(reads) }
    }

    /// A structure inside this one, tracked alike.
    fn inner(&self, map: &'a Map<String, Value>) -> Params<'a> {
        if let Some(reads) = self.reads {
            reads.structures.borrow_mut().insert(address(map));
        }
        Params { map, faults: self.faults, reads: self.reads }
    }

    pub fn invalid(&self, name: &str, why: &str) -> OpError {
        OpError::new(self.faults.invalid, format!("Value for parameter {name} is invalid. Reason: {why}."))
    }

    fn missing(&self, name: &str) -> OpError {
        OpError::new(self.faults.missing, format!("The request must contain the parameter {name}."))
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        let (key, value) = self.map.get_key_value(name)?;
        if let Some(reads) = self.reads {
            reads.read.borrow_mut().insert((address(self.map), key.as_ptr() as usize));
        }
        Some(value).filter(|value| !value.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.invalid(name, "must be a string")),
        }
    }

    pub fn required(&self, name: &str) -> Result<String, OpError> {
        self.string(name)?.ok_or_else(|| self.missing(name))
    }

    /// The first of several names that is present (e.g. `StreamARN` or `StreamName`).
    pub fn required_any(&self, names: &[&str]) -> Result<String, OpError> {
        for name in names {
            if let Some(value) = self.string(name)? {
                return Ok(value);
            }
        }
        Err(self.missing(names.join(" or ").as_str()))
    }

    pub fn i64(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(|| self.invalid(name, "must be an integer")),
            Some(Value::String(text)) => text.trim().parse().map(Some).map_err(|_| self.invalid(name, "must be an integer")),
            Some(_) => Err(self.invalid(name, "must be an integer")),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i32>, OpError> {
        match self.i64(name)? {
            None => Ok(None),
            Some(value) => i32::try_from(value).map(Some).map_err(|_| self.invalid(name, "is out of range")),
        }
    }

    /// A finite number (Query sends it as text).
    pub fn f64(&self, name: &str) -> Result<Option<f64>, OpError> {
        let number = match self.get(name) {
            None => return Ok(None),
            Some(Value::Number(number)) => number.as_f64(),
            Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        number.filter(|n| n.is_finite()).map(Some).ok_or_else(|| self.invalid(name, "must be a number"))
    }

    pub fn required_int(&self, name: &str) -> Result<i32, OpError> {
        self.int(name)?.ok_or_else(|| self.missing(name))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(self.invalid(name, "must be true or false")),
        }
    }

    /// A blob: base64 text in both protocols.
    pub fn blob(&self, name: &str) -> Result<Option<Bytes>, OpError> {
        match self.string(name)? {
            None => Ok(None),
            Some(text) => {
                STANDARD.decode(text.as_bytes()).map(|bytes| Some(Bytes::from(bytes))).map_err(|_| self.invalid(name, "must be base64"))
            }
        }
    }

    /// A timestamp in milliseconds: epoch seconds (JSON, possibly fractional) or ISO 8601 (Query).
    pub fn timestamp_ms(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => {
                let seconds = number.as_f64().ok_or_else(|| self.invalid(name, "must be a timestamp"))?;
                if !(0.0..1e11).contains(&seconds) {
                    return Err(self.invalid(name, "is out of range"));
                }
                Ok(Some((seconds * 1000.0).round() as i64))
            }
            Some(Value::String(text)) => {
                if let Ok(seconds) = text.parse::<f64>() {
                    if (0.0..1e11).contains(&seconds) {
                        return Ok(Some((seconds * 1000.0).round() as i64));
                    }
                }
                let time = humantime::parse_rfc3339_weak(text).map_err(|_| self.invalid(name, "must be a timestamp"))?;
                let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| self.invalid(name, "is before 1970"))?;
                Ok(Some(since.as_millis() as i64))
            }
            Some(_) => Err(self.invalid(name, "must be a timestamp")),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>, OpError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| self.invalid(name, "must be a list of strings")))
                .collect(),
            // The Query protocol sends an empty list as `Name=`.
            Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
            Some(_) => Err(self.invalid(name, "must be a list of strings")),
        }
    }

    /// A map of strings, in the order given.
    pub fn string_map(&self, name: &str) -> Result<KeyValues, OpError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => Ok((key.clone(), text.clone())),
                    _ => Err(self.invalid(name, "must map names to strings")),
                })
                .collect(),
            Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
            Some(_) => Err(self.invalid(name, "must map names to strings")),
        }
    }

    /// A list of `{Key, Value}` objects (SNS and Kinesis tag lists) as pairs.
    pub fn tag_list(&self, name: &str) -> Result<KeyValues, OpError> {
        self.objects(name)?.iter().map(|tag| Ok((tag.required("Key")?, tag.string("Value")?.unwrap_or_default()))).collect()
    }

    /// A member as given, read whole (its reader checks what it holds).
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.get(name)
    }

    pub fn object(&self, name: &str) -> Result<Option<Params<'a>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(self.inner(map))),
            Some(_) => Err(self.invalid(name, "must be a structure")),
        }
    }

    pub fn objects(&self, name: &str) -> Result<Vec<Params<'a>>, OpError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(self.inner(map)),
                    _ => Err(self.invalid(name, "must be a list of structures")),
                })
                .collect(),
            Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
            Some(_) => Err(self.invalid(name, "must be a list of structures")),
        }
    }

    /// SQS/SNS message attributes: a map of name to `{DataType, StringValue | BinaryValue}`.
    pub fn message_attributes(&self, name: &str) -> Result<Vec<MessageAttribute>, OpError> {
        let Some(value) = self.get(name) else { return Ok(Vec::new()) };
        let Value::Object(map) = value else { return Err(self.invalid(name, "must map names to attribute values")) };
        map.iter()
            .map(|(attribute, value)| {
                let Value::Object(fields) = value else { return Err(self.invalid(name, "must map names to attribute values")) };
                let fields = self.inner(fields);
                Ok(MessageAttribute {
                    name: attribute.clone(),
                    data_type: fields.string("DataType")?.unwrap_or_default(),
                    string_value: fields.string("StringValue")?,
                    binary_value: fields.blob("BinaryValue")?,
                })
            })
            .collect()
    }
}

/// Folds Query-protocol form fields into the JSON shape of the same request.
///
/// `renames` maps an SQS flattened name to its JSON member (`Attribute` → `Attributes`);
/// lists of `{Name|Key|key, Value|value}` under a renamed map name become objects.
pub fn query_tree(pairs: &[(String, String)], renames: &[(&str, &str, Shape)]) -> Result<Map<String, Value>, OpError> {
    let mut root = Map::new();
    for (name, value) in pairs {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > QUERY_NAME_PARTS_MAX || parts.iter().any(|part| part.is_empty()) {
            return Err(OpError::new(ErrorCode::MalformedRequest, format!("the parameter name {name:?} is not valid")));
        }
        insert(&mut root, &parts, value);
    }
    let mut tree = fold(Value::Object(root), renames);
    match tree {
        Value::Object(ref mut map) => Ok(std::mem::take(map)),
        _ => Err(OpError::new(ErrorCode::MalformedRequest, "the request's parameters are not a structure")),
    }
}

/// What a flattened Query name becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    List,
    Map,
}

fn insert(map: &mut Map<String, Value>, parts: &[&str], value: &str) {
    let (first, rest) = (parts[0], &parts[1..]);
    if rest.is_empty() {
        // A scalar; a later scalar of the same name wins, a structure is never overwritten.
        if !matches!(map.get(first), Some(Value::Object(_))) {
            map.insert(first.to_owned(), Value::String(value.to_owned()));
        }
        return;
    }
    let child = map.entry(first.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(child) = child {
        insert(child, rest, value);
    }
}

/// Turns `{"1": a, "2": b}` into `[a, b]`, `member` lists and `entry` maps into their JSON
/// shapes, and renamed flattened names into their JSON members.
fn fold(value: Value, renames: &[(&str, &str, Shape)]) -> Value {
    let Value::Object(mut map) = value else { return value };
    if !map.is_empty() && map.keys().all(|key| key.parse::<u64>().is_ok()) {
        let mut items: Vec<(u64, Value)> = map.into_iter().map(|(key, value)| (key.parse().unwrap_or(0), fold(value, renames))).collect();
        items.sort_by_key(|(index, _)| *index);
        return Value::Array(items.into_iter().map(|(_, value)| value).collect());
    }
    if map.len() == 1 {
        if let Some(members) = map.remove("member") {
            return fold(members, renames);
        }
        if let Some(entries) = map.remove("entry") {
            return entries_to_map(fold(entries, renames));
        }
    }
    let mut folded = Map::new();
    for (key, value) in map {
        let value = fold(value, renames);
        match renames.iter().find(|(from, _, _)| *from == key) {
            Some((_, to, Shape::Map)) => {
                folded.insert((*to).to_owned(), entries_to_map(value));
            }
            Some((_, to, Shape::List)) => {
                folded.insert((*to).to_owned(), value);
            }
            None => {
                folded.insert(key, value);
            }
        }
    }
    Value::Object(folded)
}

fn entries_to_map(entries: Value) -> Value {
    let Value::Array(entries) = entries else { return entries };
    let mut map = Map::new();
    for entry in entries {
        let Value::Object(mut entry) = entry else { continue };
        let key = ["Name", "Key", "key", "name"].iter().find_map(|name| entry.remove(*name));
        let value = ["Value", "value"].iter().find_map(|name| entry.remove(*name));
        if let Some(Value::String(key)) = key {
            map.insert(key, value.unwrap_or(Value::String(String::new())));
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(text.as_bytes()).into_owned().collect()
    }

    const SQS: &[(&str, &str, Shape)] = &[
        ("Attribute", "Attributes", Shape::Map),
        ("MessageAttribute", "MessageAttributes", Shape::Map),
        ("AttributeName", "AttributeNames", Shape::List),
        ("SendMessageBatchRequestEntry", "Entries", Shape::List),
    ];

    #[test]
    fn sqs_flattened_names_fold_into_json_members() {
        let tree = query_tree(
            &pairs("Action=CreateQueue&QueueName=q&Attribute.2.Name=DelaySeconds&Attribute.2.Value=5&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=60&AttributeName.1=All"),
            SQS,
        )
        .unwrap();
        let params = Params::new(&tree, SQS_FAULTS);
        assert_eq!(params.required("QueueName").unwrap(), "q");
        let mut attributes = params.string_map("Attributes").unwrap();
        attributes.sort();
        assert_eq!(attributes, vec![("DelaySeconds".into(), "5".into()), ("VisibilityTimeout".into(), "60".into())]);
        assert_eq!(params.strings("AttributeNames").unwrap(), vec!["All".to_owned()]);
    }

    #[test]
    fn batch_entries_keep_their_order_and_nested_attributes() {
        let tree = query_tree(
            &pairs(
                "SendMessageBatchRequestEntry.10.Id=b&SendMessageBatchRequestEntry.10.MessageBody=two&SendMessageBatchRequestEntry.2.Id=a&SendMessageBatchRequestEntry.2.MessageBody=one&SendMessageBatchRequestEntry.2.MessageAttribute.1.Name=k&SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.DataType=String&SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.StringValue=v",
            ),
            SQS,
        )
        .unwrap();
        let entries = Params::new(&tree, SQS_FAULTS).objects("Entries").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].required("Id").unwrap(), "a");
        assert_eq!(entries[1].required("MessageBody").unwrap(), "two");
        let attributes = entries[0].message_attributes("MessageAttributes").unwrap();
        assert_eq!(attributes, vec![MessageAttribute::string("k", "String", "v")]);
    }

    #[test]
    fn sns_member_lists_and_entry_maps_fold() {
        let tree = query_tree(
            &pairs("Tags.member.1.Key=a&Tags.member.1.Value=1&Attributes.entry.1.key=DisplayName&Attributes.entry.1.value=d&MessageAttributes.entry.1.Name=n&MessageAttributes.entry.1.Value.DataType=Number&MessageAttributes.entry.1.Value.StringValue=3"),
            &[],
        )
        .unwrap();
        let params = Params::new(&tree, SNS_FAULTS);
        assert_eq!(params.tag_list("Tags").unwrap(), vec![("a".into(), "1".into())]);
        assert_eq!(params.string_map("Attributes").unwrap(), vec![("DisplayName".into(), "d".into())]);
        assert_eq!(params.message_attributes("MessageAttributes").unwrap(), vec![MessageAttribute::string("n", "Number", "3")]);
    }

    #[test]
    fn members_an_action_never_read_are_found_at_any_depth() {
        let unread = |body: &str| {
            let tree: Map<String, Value> = serde_json::from_str(body).unwrap();
            let reads = Reads::default();
            let params = Params::tracked(&tree, SQS_FAULTS, &reads);
            params.required("QueueUrl").unwrap();
            for entry in params.objects("Entries").unwrap() {
                entry.required("Id").unwrap();
            }
            params.message_attributes("MessageAttributes").unwrap();
            (reads.unread(&tree, |_| false), reads.unread(&tree, |name| name.starts_with("X-Amz-")))
        };
        assert_eq!(unread(r#"{"QueueUrl": "q", "Entries": [{"Id": "1"}], "MessageAttributes": {"a": {"DataType": "String"}}}"#).0, None);
        assert_eq!(unread(r#"{"QueueUrl": "q", "Extra": 1}"#).0.as_deref(), Some("Extra"));
        assert_eq!(unread(r#"{"QueueUrl": "q", "Entries": [{"Id": "1"}, {"Id": "2", "Extra": 1}]}"#).0.as_deref(), Some("Entries.2.Extra"));
        let nested = r#"{"QueueUrl": "q", "MessageAttributes": {"a": {"DataType": "String", "StringListValues": []}}}"#;
        assert_eq!(unread(nested).0.as_deref(), Some("MessageAttributes.a.StringListValues"));
        let signed = r#"{"QueueUrl": "q", "X-Amz-Signature": "s"}"#;
        assert_eq!(unread(signed), (Some("X-Amz-Signature".to_owned()), None));
    }

    #[test]
    fn hostile_names_and_types_are_typed_errors() {
        assert!(query_tree(&pairs("a.b.c.d.e.f.g.h.i.j.k=1"), &[]).is_err());
        assert!(query_tree(&pairs("a..b=1"), &[]).is_err());
        let tree: Map<String, Value> = serde_json::from_str(r#"{"MaxNumberOfMessages":"x","QueueUrl":5,"Big":99999999999}"#).unwrap();
        let params = Params::new(&tree, SQS_FAULTS);
        assert_eq!(params.int("MaxNumberOfMessages").unwrap_err().code, ErrorCode::InvalidParameterValue);
        assert_eq!(params.required("QueueUrl").unwrap_err().code, ErrorCode::InvalidParameterValue);
        assert_eq!(params.required("Missing").unwrap_err().code, ErrorCode::MissingParameter);
        assert!(params.int("Big").is_err());
        assert_eq!(params.i64("Big").unwrap(), Some(99_999_999_999));
    }
}
