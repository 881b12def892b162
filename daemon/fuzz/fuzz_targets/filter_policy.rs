//! Fuzzes SNS filter policies: compiling a policy (JSON from a client) in either scope, and
//! matching it against a message whose attributes and body come from the input too.
//! Nothing may panic, however deep, large or odd the policy or the message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::catalog::filter::{parse_arrays, FilterPolicy, Message, Scope};
use sluice_protocol::MessageAttribute;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The policy, then (after a NUL) a message body, then attributes as `name=type=value` lines.
    let mut parts = text.splitn(3, '\0');
    let policy = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let attributes: Vec<MessageAttribute> = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '=');
            Some(MessageAttribute::string(fields.next()?, fields.next()?, fields.next()?))
        })
        .collect();
    for scope in [Scope::MessageAttributes, Scope::MessageBody] {
        let Ok(Some(policy)) = FilterPolicy::compile(policy, scope) else { continue };
        let arrays = parse_arrays(&attributes);
        let _ = policy.matches(&Message::Attributes { attributes: &attributes, arrays: &arrays });
        let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
        let _ = policy.matches(&Message::Body(parsed.as_ref().and_then(|value| value.as_object())));
    }
});
