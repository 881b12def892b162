//! Principals (`--credentials FILE`): who may call the daemon, each with an access key id and
//! a secret, as AWS IAM users have. A JSON file:
//!
//! ```json
//! { "principals": [
//!     { "access_key_id": "AKIAEXAMPLE", "secret_access_key": "…",
//!       "account_id": "000000000000", "arn": "arn:aws:iam::000000000000:user/alice" } ] }
//! ```
//!
//! `account_id` defaults to `--account-id`, `arn` to `arn:aws:iam::ACCOUNT:user/ACCESS_KEY_ID`.
//! Secrets are never logged: `Debug` leaves them out.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// One caller the daemon knows.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
    pub arn: String,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("access_key_id", &self.access_key_id).field("arn", &self.arn).finish_non_exhaustive()
    }
}

/// Every principal, by access key id.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_key: HashMap<String, Principal>,
}

impl Credentials {
    pub fn load(path: &Path, default_account: &str) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read credentials {}: {e}", path.display()))?;
        Credentials::parse(&text, default_account).map_err(|e| format!("credentials {}: {e}", path.display()))
    }

    pub fn parse(text: &str, default_account: &str) -> Result<Credentials, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let principals = root.get("principals").and_then(Value::as_array).ok_or("expected an object with a \"principals\" array")?;
        let mut by_key = HashMap::new();
        for (index, entry) in principals.iter().enumerate() {
            let field = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
            let access_key_id = field("access_key_id").ok_or(format!("principal {index}: access_key_id is missing"))?;
            let secret_access_key = field("secret_access_key").ok_or(format!("principal {index}: secret_access_key is missing"))?;
            if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("principal {index}: access_key_id must be letters and digits"));
            }
            if secret_access_key.len() < 16 {
                return Err(format!("principal {index} ({access_key_id}): secret_access_key must be at least 16 characters"));
            }
            let account_id = field("account_id").unwrap_or_else(|| default_account.to_owned());
            let arn = field("arn").unwrap_or_else(|| format!("arn:aws:iam::{account_id}:user/{access_key_id}"));
            let principal = Principal { access_key_id: access_key_id.clone(), secret_access_key, account_id, arn };
            if by_key.insert(access_key_id.clone(), principal).is_some() {
                return Err(format!("access_key_id {access_key_id} is given twice"));
            }
        }
        Ok(Credentials { by_key })
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Principal> {
        self.by_key.get(access_key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_read_with_defaults_and_secrets_stay_out_of_debug() {
        let text = r#"{"principals":[
            {"access_key_id":"AKIAONE","secret_access_key":"0123456789abcdefSECRET"},
            {"access_key_id":"AKIATWO","secret_access_key":"0123456789abcdefOTHER","account_id":"111122223333","arn":"arn:aws:iam::111122223333:user/bob"}]}"#;
        let credentials = Credentials::parse(text, "000000000000").unwrap();
        let one = credentials.get("AKIAONE").unwrap();
        assert_eq!((one.account_id.as_str(), one.arn.as_str()), ("000000000000", "arn:aws:iam::000000000000:user/AKIAONE"));
        assert_eq!(credentials.get("AKIATWO").unwrap().arn, "arn:aws:iam::111122223333:user/bob");
        assert!(!format!("{credentials:?}").contains("SECRET"));
        assert!(credentials.get("AKIATHREE").is_none());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(Credentials::parse("[]", "0").unwrap_err().contains("principals"));
        assert!(Credentials::parse(r#"{"principals":[{"access_key_id":"A"}]}"#, "0").unwrap_err().contains("secret_access_key is missing"));
        assert!(Credentials::parse(r#"{"principals":[{"access_key_id":"A","secret_access_key":"short"}]}"#, "0")
            .unwrap_err()
            .contains("16"));
        let twice = r#"{"principals":[{"access_key_id":"A","secret_access_key":"0123456789abcdef"},{"access_key_id":"A","secret_access_key":"0123456789abcdef"}]}"#;
        assert!(Credentials::parse(twice, "0").unwrap_err().contains("twice"));
    }
}
