//! Principals (`--credentials FILE`): who may call the daemon, each with an access key id and
//! a secret, as AWS IAM users have. A JSON file:
//!
//! ```json
//! { "principals": [
//!     { "access_key_id": "AKIAEXAMPLE", "secret_access_key": "…",
//!       "account_id": "000000000000", "arn": "arn:aws:iam::000000000000:user/alice",
//!       "policies": [ { "Version": "2012-10-17", "Statement": [ … ] } ] } ] }
//! ```
//!
//! `account_id` defaults to `--account-id`, `arn` to `arn:aws:iam::ACCOUNT:user/ACCESS_KEY_ID`.
//! `policies` are the principal's identity policies (`policy`), compiled as the file is read;
//! without the key the principal has its account root's rights (anything within its account).
//! Secrets are never logged: `Debug` leaves them out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One caller the daemon knows.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
    pub arn: String,
    /// Identity policies; `None`: the account root's rights.
    pub policies: Option<Vec<crate::policy::Policy>>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("access_key_id", &self.access_key_id).field("arn", &self.arn).finish_non_exhaustive()
    }
}

/// Every principal, by access key id.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_key: HashMap<String, Arc<Principal>>,
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
            let policies = match entry.get("policies") {
                None => None,
                Some(Value::Array(documents)) => Some(
                    documents
                        .iter()
                        .enumerate()
                        .map(|(at, document)| {
                            crate::policy::Policy::compile(document, crate::policy::Kind::Identity)
                                .map_err(|e| format!("principal {index} ({access_key_id}), policy {at}: {e}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(format!("principal {index} ({access_key_id}): policies must be a list of policy documents")),
            };
            let principal = Principal { access_key_id: access_key_id.clone(), secret_access_key, account_id, arn, policies };
            if by_key.insert(access_key_id.clone(), Arc::new(principal)).is_some() {
                return Err(format!("access_key_id {access_key_id} is given twice"));
            }
        }
        Ok(Credentials { by_key })
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Arc<Principal>> {
        self.by_key.get(access_key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The principals in force, read from `--credentials` at start and again on SIGHUP (a file
/// that does not read, or names nobody, is refused and the set in force stays). Shards take no
/// lock on the request path: each keeps the set it last saw and fetches the new one only when
/// the generation has moved.
#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
    account: String,
    generation: AtomicU64,
    current: Mutex<Arc<Credentials>>,
}

thread_local! {
    /// (store, generation, set) this thread last saw.
    static SEEN: std::cell::RefCell<Option<(usize, u64, Arc<Credentials>)>> = const { std::cell::RefCell::new(None) };
}

impl CredentialStore {
    /// Reads `path`; refuses a file that names no principal (nobody could call the daemon).
    pub fn open(path: &Path, default_account: &str) -> Result<Arc<CredentialStore>, String> {
        let credentials = CredentialStore::read(path, default_account)?;
        Ok(Arc::new(CredentialStore {
            path: path.to_owned(),
            account: default_account.to_owned(),
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(credentials)),
        }))
    }

    fn read(path: &Path, default_account: &str) -> Result<Credentials, String> {
        let credentials = Credentials::load(path, default_account)?;
        if credentials.is_empty() {
            return Err(format!("{} names no principals: nobody could call the daemon", path.display()));
        }
        Ok(credentials)
    }

    /// Reads the file again and puts it in force; returns how many principals it names.
    /// On an error the set in force stays.
    pub fn reload(&self) -> Result<usize, String> {
        let credentials = CredentialStore::read(&self.path, &self.account)?;
        let count = credentials.by_key.len();
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(credentials);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(count)
    }

    /// The set in force (for this thread, the one it last saw unless a reload came since).
    pub fn current(&self) -> Arc<Credentials> {
        let store = self as *const CredentialStore as usize;
        let generation = self.generation.load(Ordering::Acquire);
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            match &*seen {
                Some((at, seen_generation, credentials)) if *at == store && *seen_generation == generation => credentials.clone(),
                _ => {
                    let credentials = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                    *seen = Some((store, generation, credentials.clone()));
                    credentials
                }
            }
        })
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
    fn a_reload_puts_the_new_file_in_force_and_a_bad_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("sluice-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.json");
        let write = |id: &str| {
            std::fs::write(&path, format!(r#"{{"principals":[{{"access_key_id":"{id}","secret_access_key":"0123456789abcdefXYZ"}}]}}"#))
                .unwrap()
        };
        write("AKIAONE");
        let store = CredentialStore::open(&path, "0").unwrap();
        assert!(store.current().get("AKIAONE").is_some());
        write("AKIATWO");
        assert_eq!(store.reload(), Ok(1));
        assert!(store.current().get("AKIAONE").is_none() && store.current().get("AKIATWO").is_some());
        std::fs::write(&path, "not json").unwrap();
        assert!(store.reload().is_err());
        assert!(store.current().get("AKIATWO").is_some(), "the set in force stays");
        std::fs::write(&path, r#"{"principals":[]}"#).unwrap();
        assert!(store.reload().unwrap_err().contains("names no principals"));
        std::fs::remove_dir_all(&dir).unwrap();
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
