//! What an HTTP/S subscription's settings say: its delivery policy (when to try again) and
//! whether its endpoint is a URL Sluice can deliver to. Checked when a subscription is made
//! or changed; read by the delivery task (`topic::http`) on every attempt.

use serde_json::Value;
use sluice_protocol::{ErrorCode, OpError};

use super::topics::SubscriptionMeta;
use super::DELIVERY_QUEUE_PREFIX;

impl SubscriptionMeta {
    /// The hidden queue that holds this subscription's deliveries (HTTP/S and Firehose subscriptions).
    pub fn delivery_queue(&self) -> Option<String> {
        if !self.protocol.starts_with("http") && self.protocol != "firehose" {
            return None;
        }
        let id = self.arn.rsplit(':').next()?;
        Some(format!("{DELIVERY_QUEUE_PREFIX}{id}"))
    }
}

/// When to try again, from an SNS delivery policy's `healthyRetryPolicy`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub min_delay_s: u64,
    pub max_delay_s: u64,
    pub num_retries: u32,
    pub num_no_delay_retries: u32,
    pub num_min_delay_retries: u32,
    pub num_max_delay_retries: u32,
    pub backoff: Backoff,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

impl Default for RetryPolicy {
    /// SNS's default for HTTP/S: three retries, 20 seconds apart.
    fn default() -> Self {
        RetryPolicy {
            min_delay_s: 20,
            max_delay_s: 20,
            num_retries: 3,
            num_no_delay_retries: 0,
            num_min_delay_retries: 0,
            num_max_delay_retries: 0,
            backoff: Backoff::Linear,
        }
    }
}

fn invalid_policy(reason: impl std::fmt::Display) -> OpError {
    OpError::new(ErrorCode::InvalidParameter, format!("Invalid parameter: DeliveryPolicy: {reason}"))
}

impl RetryPolicy {
    /// SNS's policy for the endpoints AWS runs (Lambda, SQS, Firehose): 3 tries at once, 2 a
    /// second apart, 10 backing off from 1 to 20 seconds, then 100,000 20 seconds apart — 23
    /// days in all.
    pub fn aws_managed() -> RetryPolicy {
        RetryPolicy {
            min_delay_s: 1,
            max_delay_s: 20,
            num_retries: 100_015,
            num_no_delay_retries: 3,
            num_min_delay_retries: 2,
            num_max_delay_retries: 100_000,
            backoff: Backoff::Exponential,
        }
    }

    /// Reads `healthyRetryPolicy` from a subscription's policy, or `http.defaultHealthyRetryPolicy`
    /// from a topic's; SNS's bounds are checked.
    pub fn parse(policy: &Value) -> Result<Option<RetryPolicy>, OpError> {
        let retry = match (policy.get("healthyRetryPolicy"), policy.pointer("/http/defaultHealthyRetryPolicy")) {
            (Some(retry), _) | (None, Some(retry)) => retry,
            (None, None) => return Ok(None),
        };
        let number = |key: &str, default: u64, max: u64| -> Result<u64, OpError> {
            match retry.get(key) {
                None => Ok(default),
                Some(value) => value
                    .as_u64()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| invalid_policy(format!("{key} must be a whole number from 0 to {max}"))),
            }
        };
        let backoff = match retry.get("backoffFunction").and_then(Value::as_str).unwrap_or("linear") {
            "linear" => Backoff::Linear,
            "arithmetic" => Backoff::Arithmetic,
            "geometric" => Backoff::Geometric,
            "exponential" => Backoff::Exponential,
            other => return Err(invalid_policy(format!("unknown backoffFunction {other:?}"))),
        };
        let parsed = RetryPolicy {
            min_delay_s: number("minDelayTarget", 20, 3600)?.max(1),
            max_delay_s: number("maxDelayTarget", 20, 3600)?.max(1),
            num_retries: number("numRetries", 3, 100)? as u32,
            num_no_delay_retries: number("numNoDelayRetries", 0, 100)? as u32,
            num_min_delay_retries: number("numMinDelayRetries", 0, 100)? as u32,
            num_max_delay_retries: number("numMaxDelayRetries", 0, 100)? as u32,
            backoff,
        };
        if parsed.min_delay_s > parsed.max_delay_s {
            return Err(invalid_policy("minDelayTarget must not exceed maxDelayTarget"));
        }
        if parsed.num_no_delay_retries + parsed.num_min_delay_retries + parsed.num_max_delay_retries > parsed.num_retries {
            return Err(invalid_policy("numNoDelayRetries + numMinDelayRetries + numMaxDelayRetries must not exceed numRetries"));
        }
        Ok(Some(parsed))
    }

    /// Attempts in all: the first and every retry.
    pub fn attempts(&self) -> u32 {
        1 + self.num_retries
    }

    /// The delay before retry number `retry` (1-based), in milliseconds: immediate retries,
    /// then retries at the minimum delay, the backoff phase from minimum to maximum, and
    /// retries at the maximum.
    pub fn delay_ms(&self, retry: u32) -> u64 {
        let (min, max) = (self.min_delay_s as f64, self.max_delay_s as f64);
        let backoff_retries = self.num_retries - self.num_no_delay_retries - self.num_min_delay_retries - self.num_max_delay_retries;
        let seconds = if retry <= self.num_no_delay_retries {
            0.0
        } else if retry <= self.num_no_delay_retries + self.num_min_delay_retries {
            min
        } else if retry <= self.num_no_delay_retries + self.num_min_delay_retries + backoff_retries {
            let step = retry - self.num_no_delay_retries - self.num_min_delay_retries; // 1..=backoff_retries
            let fraction = if backoff_retries <= 1 { 1.0 } else { (step - 1) as f64 / (backoff_retries - 1) as f64 };
            match self.backoff {
                Backoff::Linear => min + (max - min) * fraction,
                Backoff::Arithmetic => min + (max - min) * fraction * fraction,
                Backoff::Geometric => min + (max - min) * fraction.sqrt(),
                Backoff::Exponential => min * (max / min).powf(fraction),
            }
        } else {
            max
        };
        (seconds * 1000.0).round() as u64
    }
}

/// The retry policy that applies to a subscription: its own, unless the topic forbids
/// overrides, else the topic's, else SNS's default.
pub fn effective_policy(subscription: &SubscriptionMeta, topic_policy: Option<&str>) -> RetryPolicy {
    let parse = |text: Option<&str>| text.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let topic = parse(topic_policy);
    let overrides_disabled =
        topic.as_ref().and_then(|t| t.pointer("/http/disableSubscriptionOverrides")).and_then(Value::as_bool) == Some(true);
    let own = if overrides_disabled { None } else { parse(subscription.attributes.get("DeliveryPolicy").map(String::as_str)) };
    own.and_then(|p| RetryPolicy::parse(&p).ok().flatten())
        .or_else(|| topic.and_then(|p| RetryPolicy::parse(&p).ok().flatten()))
        .unwrap_or_default()
}

/// Where a URL points, split for a request.
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub host_header: String,
    pub addr: String,
    pub port: u16,
    pub path: String,
}

/// Whether `endpoint` is a URL this server can deliver to with `protocol` (`http` or `https`).
pub fn valid_endpoint(protocol: &str, endpoint: &str) -> bool {
    target(endpoint).is_ok_and(|target| target.tls == (protocol == "https"))
}

pub fn target(endpoint: &str) -> Result<Target, String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("bad endpoint URL: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("unsupported scheme {other}")),
    };
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or("endpoint URL has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let bare_host = host.trim_matches(['[', ']']).to_owned();
    let addr = if bare_host.contains(':') { format!("[{bare_host}]:{port}") } else { format!("{bare_host}:{port}") };
    Ok(Target { tls, host: bare_host, host_header, addr, port, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_three_retries_twenty_seconds_apart() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.attempts(), 4);
        assert_eq!((1..=3).map(|r| policy.delay_ms(r)).collect::<Vec<_>>(), [20_000, 20_000, 20_000]);
    }

    #[test]
    fn phases_run_immediate_then_minimum_then_backoff_then_maximum() {
        let policy: Value = serde_json::json!({"healthyRetryPolicy": {
            "minDelayTarget": 1, "maxDelayTarget": 16, "numRetries": 9, "numNoDelayRetries": 2,
            "numMinDelayRetries": 1, "numMaxDelayRetries": 1, "backoffFunction": "exponential"}});
        let policy = RetryPolicy::parse(&policy).unwrap().unwrap();
        let delays: Vec<u64> = (1..=9).map(|r| policy.delay_ms(r)).collect();
        assert_eq!(delays, [0, 0, 1000, 1000, 2000, 4000, 8000, 16_000, 16_000]);
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            serde_json::json!({"healthyRetryPolicy": {"minDelayTarget": 30, "maxDelayTarget": 10}}),
            serde_json::json!({"healthyRetryPolicy": {"numRetries": 101}}),
            serde_json::json!({"healthyRetryPolicy": {"numRetries": 2, "numNoDelayRetries": 3}}),
            serde_json::json!({"healthyRetryPolicy": {"backoffFunction": "random"}}),
        ] {
            assert_eq!(RetryPolicy::parse(&bad).unwrap_err().code, ErrorCode::InvalidParameter, "{bad}");
        }
    }
}
