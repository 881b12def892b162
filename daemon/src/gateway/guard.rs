//! What keeps a web page from driving the broker through the gateway.
//!
//! A browser lets any page send simple requests (GETs, form POSTs) to 127.0.0.1, and
//! DNS rebinding lets a page read the answers. So the gateway answers only requests that
//! name a host it serves (`Host`: an IP address, `localhost`, the public URL's host or
//! `--http-allow-host`), refuses any request a browser marks as coming from another origin
//! (`Origin` not in `--http-allow-origin`, or `Sec-Fetch-Site` cross-site) and, through the
//! Query protocol, changes state only on POST: a GET may only read (and confirm or
//! unsubscribe, whose URLs SNS hands to endpoints as links, each carrying its own token).
//! AWS SDKs and the CLI send none of these browser headers and are not affected.

use http::header::{HeaderMap, HeaderValue, HOST, ORIGIN};

use crate::config::Config;

/// Query actions a GET may carry: they read, or act on a token or ARN handed out as a link.
const GET_ACTIONS: &[&str] = &[
    "ListQueues",
    "GetQueueUrl",
    "GetQueueAttributes",
    "ListQueueTags",
    "ListDeadLetterSourceQueues",
    "ListTopics",
    "GetTopicAttributes",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "GetSubscriptionAttributes",
    "ListTagsForResource",
    "ConfirmSubscription",
    "Unsubscribe",
    "DescribeAlarms",
    "GetMetricStatistics",
    "GetMetricData",
    "ListMetrics",
];

/// Why a request is refused before it is read.
pub enum Refusal {
    Host(String),
    Origin(String),
    CrossSite,
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Host(host) => format!(
                "Host {host} is not served here: name the gateway by IP address, localhost or the --public-url host, or allow the name with --http-allow-host."
            ),
            Refusal::Origin(origin) => {
                format!("Requests from web pages of {origin} are refused; allow the origin with --http-allow-origin.")
            }
            Refusal::CrossSite => "Cross-site requests from web pages are refused.".to_owned(),
        }
    }
}

/// The allowed origin a request carries (for CORS answers), or why it is refused.
pub fn check(config: &Config, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refusal> {
    if let Some(host) = headers.get(HOST) {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(config, host) {
            return Err(Refusal::Host(host.chars().take(200).collect()));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        if !config.http_allow_origin.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(text)) {
            return Err(Refusal::Origin(text.chars().take(200).collect()));
        }
        return Ok(Some(origin.clone()));
    }
    let site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()).unwrap_or("");
    if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
        return Err(Refusal::CrossSite);
    }
    Ok(None)
}

/// Whether a Query action may come as a GET.
pub fn get_allowed(action: &str) -> bool {
    GET_ACTIONS.contains(&action)
}

/// The host part of a `Host` header (no port, no IPv6 brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn host_allowed(config: &Config, host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.');
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    let public = url::Url::parse(&config.public_url).ok().and_then(|url| url.host_str().map(str::to_owned));
    if public.is_some_and(|public| public.trim_matches(['[', ']']).eq_ignore_ascii_case(name)) {
        return true;
    }
    config.http_allow_host.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// CORS headers for an allowed origin.
pub fn cors_headers(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert("access-control-allow-origin", origin.clone());
    headers.insert("vary", HeaderValue::from_static("Origin"));
    headers.insert("access-control-expose-headers", HeaderValue::from_static("x-amzn-requestid, x-amzn-query-error, x-amz-request-id"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("127.0.0.1:4566"), "127.0.0.1");
        assert_eq!(host_name("[::1]:4566"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }
}
