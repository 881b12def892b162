//! The key service's keys: what the catalog holds of them (every shard sees them in its
//! snapshot, material included, so any shard encrypts and decrypts without a hop), the
//! changes the KMS actions make, and how the metadata file keeps them — each version of
//! each key's material sealed under the root key (`root`), never in clear.
//!
//! Three kinds of key: customer keys (CreateKey), AWS-managed keys (`alias/aws/sqs`,
//! `alias/aws/sns`, `alias/aws/kinesis`, made the first time something names them; they
//! rotate yearly and cannot be disabled or deleted), and the keys the services own for
//! SSE-SQS (`SqsManagedSseEnabled`), which no key action sees.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_protocol::{AliasEntry, ErrorCode, KeyDescription, OpError};

use super::root::RootKey;

/// Bytes of key material (AES-256).
pub const MATERIAL_BYTES: usize = 32;
/// Keys one server holds (customer and AWS-managed), and aliases.
pub const KEYS_MAX: usize = 10_000;
pub const ALIASES_MAX: usize = 10_000;
/// On-demand rotations a key may have (as KMS).
pub const ON_DEMAND_ROTATIONS_MAX: u32 = 10;
/// The services whose AWS-managed keys exist (`alias/aws/<service>`).
pub const MANAGED_SERVICES: [&str; 3] = ["kinesis", "sns", "sqs"];
const DAY_MS: u64 = 86_400_000;
/// Rotation periods KMS allows, in days, and its default.
pub const ROTATION_DAYS: std::ops::RangeInclusive<i32> = 90..=2560;
pub const ROTATION_DAYS_DEFAULT: u32 = 365;
/// Deletion waiting periods KMS allows, in days, and its default.
pub const PENDING_DAYS: std::ops::RangeInclusive<i32> = 7..=30;
pub const PENDING_DAYS_DEFAULT: u32 = 30;

/// One version of a key's material. Its `Debug` never shows it.
pub struct Material(pub [u8; MATERIAL_BYTES]);

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Material(..)")
    }
}

impl Material {
    fn random() -> Arc<Material> {
        let mut bytes = [0u8; MATERIAL_BYTES];
        super::random(&mut bytes);
        Arc::new(Material(bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    /// Deleted, with every version of its material, at this time.
    PendingDeletion {
        at_ms: u64,
    },
}

impl KeyState {
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion { .. } => "PendingDeletion",
        }
    }
}

/// Who manages a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    Customer,
    /// AWS-managed, for this service (`alias/aws/<service>`).
    Aws(String),
    /// Owned by this service (SSE-SQS): no key action sees it.
    Service(String),
}

#[derive(Debug)]
pub struct KmsKey {
    /// The key id (a UUID), and its 16 bytes as ciphertexts name it.
    pub id: String,
    pub uuid: [u8; 16],
    pub arn: String,
    pub description: String,
    pub created_ms: u64,
    pub state: KeyState,
    pub manager: Manager,
    /// Automatic rotation's period in days, when on.
    pub rotation_days: Option<u32>,
    /// When the current version was made (automatic rotation counts from here).
    pub rotated_ms: u64,
    pub on_demand_rotations: u32,
    /// Every version of the material, oldest first: data sealed under any of them still opens;
    /// new data uses the last.
    pub versions: Vec<Arc<Material>>,
    pub tags: BTreeMap<String, String>,
}

impl KmsKey {
    /// The version new data is sealed under.
    pub fn current(&self) -> (u32, &Arc<Material>) {
        let version = self.versions.len() - 1;
        (version as u32, &self.versions[version])
    }

    pub fn material(&self, version: u32) -> Option<&Arc<Material>> {
        self.versions.get(version as usize)
    }

    /// Whether it may seal and open data now; the error KMS answers when not.
    pub fn usable(&self) -> Result<(), OpError> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(OpError::new(ErrorCode::KmsDisabled, format!("{} is disabled.", self.arn))),
            KeyState::PendingDeletion { .. } => Err(OpError::new(ErrorCode::KmsInvalidState, format!("{} is pending deletion.", self.arn))),
        }
    }

    fn next_rotation_ms(&self) -> Option<u64> {
        self.rotation_days.map(|days| self.rotated_ms + days as u64 * DAY_MS)
    }

    pub fn describe(&self) -> KeyDescription {
        KeyDescription {
            key_id: self.id.clone(),
            arn: self.arn.clone(),
            description: self.description.clone(),
            state: self.state.name().to_owned(),
            created_ms: self.created_ms,
            deletion_ms: match self.state {
                KeyState::PendingDeletion { at_ms } => Some(at_ms),
                _ => None,
            },
            manager: if self.manager == Manager::Customer { "CUSTOMER" } else { "AWS" }.to_owned(),
            key_usage: "ENCRYPT_DECRYPT".to_owned(),
            key_spec: "SYMMETRIC_DEFAULT".to_owned(),
            rotation_enabled: self.rotation_days.is_some(),
            rotation_period_days: self.rotation_days.unwrap_or(0) as i32,
            next_rotation_ms: self.next_rotation_ms(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alias {
    pub key_id: String,
    pub created_ms: u64,
}

/// Where key and alias ARNs point.
#[derive(Debug, Clone, Default)]
pub struct KeyNaming {
    pub region: String,
    pub account_id: String,
}

impl KeyNaming {
    pub fn key_arn(&self, id: &str) -> String {
        format!("arn:aws:kms:{}:{}:key/{id}", self.region, self.account_id)
    }

    pub fn alias_arn(&self, name: &str) -> String {
        format!("arn:aws:kms:{}:{}:{name}", self.region, self.account_id)
    }
}

/// Every key and alias; immutable once in a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub naming: KeyNaming,
    /// Customer and AWS-managed keys, by id.
    by_id: BTreeMap<String, Arc<KmsKey>>,
    /// Keys the services own (SSE-SQS), by service.
    owned: BTreeMap<String, Arc<KmsKey>>,
    aliases: BTreeMap<String, Alias>,
}

/// A KMS change; applied on shard 0 by the catalog.
#[derive(Debug, Clone)]
pub enum KeyChange {
    Create {
        description: String,
        tags: BTreeMap<String, String>,
    },
    Alias {
        alias: String,
        key: String,
        update: bool,
    },
    DeleteAlias {
        alias: String,
    },
    SetEnabled {
        key: String,
        enabled: bool,
    },
    ScheduleDeletion {
        key: String,
        pending_days: u32,
    },
    CancelDeletion {
        key: String,
    },
    Rotation {
        key: String,
        days: Option<u32>,
    },
    RotateNow {
        key: String,
    },
    /// Makes the AWS-managed key of a service if it is not made yet.
    Managed {
        service: String,
    },
    /// Makes the key a service owns if it is not made yet.
    Owned {
        service: String,
    },
    /// Rotates the keys whose rotation is due and deletes those whose deletion is due.
    Tick,
}

fn not_found(reference: &str) -> OpError {
    if reference.contains("alias/") {
        OpError::new(ErrorCode::KmsNotFound, format!("Alias {reference} is not found."))
    } else {
        OpError::new(ErrorCode::KmsNotFound, format!("Key '{reference}' does not exist"))
    }
}

fn new_uuid() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    super::random(&mut bytes);
    *uuid::Builder::from_random_bytes(bytes).into_uuid().as_bytes()
}

impl Keys {
    pub fn new(naming: KeyNaming) -> Keys {
        Keys { naming, ..Keys::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.owned.is_empty()
    }

    /// The key a reference names: a key id, key ARN, alias name or alias ARN. An AWS-managed
    /// alias whose key is not made yet names nothing.
    pub fn resolve(&self, reference: &str) -> Option<&Arc<KmsKey>> {
        let local = reference.strip_prefix("arn:aws:kms:").map_or(reference, |rest| {
            // region:account:key/ID or region:account:alias/NAME
            rest.splitn(3, ':').nth(2).unwrap_or("")
        });
        if let Some(id) = local.strip_prefix("key/") {
            return self.by_id.get(id);
        }
        if local.starts_with("alias/") {
            return self.by_id.get(&self.aliases.get(local)?.key_id);
        }
        self.by_id.get(local)
    }

    /// Like `resolve`, with KMS's error when nothing is named.
    pub fn find(&self, reference: &str) -> Result<&Arc<KmsKey>, OpError> {
        self.resolve(reference).ok_or_else(|| not_found(reference))
    }

    /// The key that ciphertexts and sealed records name by its 16 bytes (owned keys too).
    pub fn by_uuid(&self, uuid: &[u8; 16]) -> Option<&Arc<KmsKey>> {
        let id = uuid::Uuid::from_bytes(*uuid).hyphenated().to_string();
        self.by_id.get(&id).or_else(|| self.owned.values().find(|key| key.uuid == *uuid))
    }

    /// The key a service owns (SSE-SQS), if made.
    pub fn owned(&self, service: &str) -> Option<&Arc<KmsKey>> {
        self.owned.get(service)
    }

    /// The service an `alias/aws/<service>` reference names, if it names one.
    pub fn managed_service(reference: &str) -> Option<&str> {
        let local = reference.strip_prefix("arn:aws:kms:").map_or(reference, |rest| rest.splitn(3, ':').nth(2).unwrap_or(""));
        local.strip_prefix("alias/aws/").filter(|service| MANAGED_SERVICES.contains(service))
    }

    /// Customer and AWS-managed keys, by id.
    pub fn listed(&self) -> impl Iterator<Item = &Arc<KmsKey>> {
        self.by_id.values()
    }

    /// Every alias (the AWS-managed ones too, made or not), of one key when `key` is set, by name.
    pub fn aliases(&self, key: Option<&KmsKey>) -> Vec<AliasEntry> {
        let mut rows: BTreeMap<String, AliasEntry> = BTreeMap::new();
        for service in MANAGED_SERVICES {
            let name = format!("alias/aws/{service}");
            rows.insert(name.clone(), AliasEntry { arn: self.naming.alias_arn(&name), name, target_key_id: None, created_ms: 0 });
        }
        for (name, alias) in &self.aliases {
            rows.insert(
                name.clone(),
                AliasEntry {
                    name: name.clone(),
                    arn: self.naming.alias_arn(name),
                    target_key_id: Some(alias.key_id.clone()),
                    created_ms: alias.created_ms,
                },
            );
        }
        rows.into_values().filter(|row| key.is_none_or(|key| row.target_key_id.as_deref() == Some(&key.id))).collect()
    }

    /// Applies a change; answers the key it is about (`None` for alias changes and ticks).
    /// The keys services own and AWS manages get their first material and id from `root`
    /// (`RootKey::derive`), so that every shard making one makes the same; without a root key
    /// (unit tests, the simulator) they are random like the others.
    pub fn apply(&mut self, change: KeyChange, now_ms: u64, root: Option<&RootKey>) -> Result<Option<Arc<KmsKey>>, OpError> {
        match change {
            KeyChange::Create { description, tags } => {
                if self.by_id.len() >= KEYS_MAX {
                    return Err(OpError::new(ErrorCode::LimitExceeded, format!("This server holds its limit of {KEYS_MAX} keys.")));
                }
                let key = self.make(description, Manager::Customer, tags, now_ms);
                self.by_id.insert(key.id.clone(), key.clone());
                Ok(Some(key))
            }
            KeyChange::Managed { service } => {
                let name = format!("alias/aws/{service}");
                if let Some(key) = self.resolve(&name) {
                    return Ok(Some(key.clone()));
                }
                if !MANAGED_SERVICES.contains(&service.as_str()) {
                    return Err(not_found(&name));
                }
                let description = format!("Default key that protects my {} data when no other key is defined", service.to_uppercase());
                let mut key = self.make(description, Manager::Aws(service), BTreeMap::new(), now_ms);
                derive_first(&mut key, root);
                Arc::get_mut(&mut key).expect("a new key").rotation_days = Some(ROTATION_DAYS_DEFAULT);
                self.by_id.insert(key.id.clone(), key.clone());
                self.aliases.insert(name, Alias { key_id: key.id.clone(), created_ms: now_ms });
                Ok(Some(key))
            }
            KeyChange::Owned { service } => {
                if let Some(key) = self.owned.get(&service) {
                    return Ok(Some(key.clone()));
                }
                let description = format!("owned by {service} for its managed encryption");
                let mut key = self.make(description, Manager::Service(service.clone()), BTreeMap::new(), now_ms);
                derive_first(&mut key, root);
                Arc::get_mut(&mut key).expect("a new key").rotation_days = Some(ROTATION_DAYS_DEFAULT);
                self.owned.insert(service, key.clone());
                Ok(Some(key))
            }
            KeyChange::Alias { alias, key, update } => {
                check_alias_name(&alias)?;
                let target = self.find(&key)?.clone();
                if target.manager != Manager::Customer {
                    return Err(OpError::new(
                        ErrorCode::UnsupportedOperation,
                        format!("{} is an AWS managed key: an alias cannot point to it.", target.arn),
                    ));
                }
                if let KeyState::PendingDeletion { .. } = target.state {
                    return Err(OpError::new(ErrorCode::KmsInvalidState, format!("{} is pending deletion.", target.arn)));
                }
                match (self.aliases.contains_key(&alias), update) {
                    (true, false) => {
                        return Err(OpError::new(
                            ErrorCode::AlreadyExists,
                            format!("An alias with the name {} already exists", self.naming.alias_arn(&alias)),
                        ))
                    }
                    (false, true) => return Err(not_found(&self.naming.alias_arn(&alias))),
                    _ => {}
                }
                if !update && self.aliases.len() >= ALIASES_MAX {
                    return Err(OpError::new(ErrorCode::LimitExceeded, format!("This server holds its limit of {ALIASES_MAX} aliases.")));
                }
                let created_ms = self.aliases.get(&alias).map_or(now_ms, |old| old.created_ms);
                self.aliases.insert(alias, Alias { key_id: target.id.clone(), created_ms });
                Ok(None)
            }
            KeyChange::DeleteAlias { alias } => {
                check_alias_name(&alias)?;
                self.aliases.remove(&alias).ok_or_else(|| not_found(&self.naming.alias_arn(&alias)))?;
                Ok(None)
            }
            KeyChange::SetEnabled { key, enabled } => self.edit_customer(&key, |key| {
                if let KeyState::PendingDeletion { .. } = key.state {
                    return Err(OpError::new(ErrorCode::KmsInvalidState, format!("{} is pending deletion.", key.arn)));
                }
                key.state = if enabled { KeyState::Enabled } else { KeyState::Disabled };
                Ok(())
            }),
            KeyChange::ScheduleDeletion { key, pending_days } => self.edit_customer(&key, |key| {
                if let KeyState::PendingDeletion { .. } = key.state {
                    return Err(OpError::new(ErrorCode::KmsInvalidState, format!("{} is pending deletion.", key.arn)));
                }
                key.state = KeyState::PendingDeletion { at_ms: now_ms + pending_days as u64 * DAY_MS };
                Ok(())
            }),
            KeyChange::CancelDeletion { key } => self.edit_customer(&key, |key| {
                if !matches!(key.state, KeyState::PendingDeletion { .. }) {
                    return Err(OpError::new(ErrorCode::KmsInvalidState, format!("{} is not pending deletion.", key.arn)));
                }
                // As KMS: a key whose deletion is cancelled comes back disabled.
                key.state = KeyState::Disabled;
                Ok(())
            }),
            KeyChange::Rotation { key, days } => self.edit_customer(&key, |key| {
                key.usable()?;
                if days.is_some() && key.rotation_days.is_none() {
                    key.rotated_ms = now_ms;
                }
                key.rotation_days = days;
                Ok(())
            }),
            KeyChange::RotateNow { key } => self.edit_customer(&key, |key| {
                key.usable()?;
                if key.on_demand_rotations >= ON_DEMAND_ROTATIONS_MAX {
                    return Err(OpError::new(
                        ErrorCode::LimitExceeded,
                        format!("{} has had its {ON_DEMAND_ROTATIONS_MAX} on-demand rotations.", key.arn),
                    ));
                }
                key.on_demand_rotations += 1;
                key.versions.push(Material::random());
                if key.rotation_days.is_some() {
                    key.rotated_ms = now_ms;
                }
                Ok(())
            }),
            KeyChange::Tick => {
                let due: Vec<String> = self.by_id.values().filter(|key| key.due(now_ms)).map(|key| key.id.clone()).collect();
                for id in due {
                    let key = &self.by_id[&id];
                    if let KeyState::PendingDeletion { at_ms } = key.state {
                        if at_ms <= now_ms {
                            self.by_id.remove(&id);
                            self.aliases.retain(|_, alias| alias.key_id != id);
                            continue;
                        }
                    }
                    let mut next = clone_key(key);
                    next.versions.push(Material::random());
                    next.rotated_ms = now_ms;
                    self.by_id.insert(id, Arc::new(next));
                }
                for (service, key) in self.owned.clone() {
                    if key.due(now_ms) {
                        let mut next = clone_key(&key);
                        next.versions.push(Material::random());
                        next.rotated_ms = now_ms;
                        self.owned.insert(service, Arc::new(next));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Whether a tick has work: a rotation or a deletion due by `now_ms`.
    pub fn tick_due(&self, now_ms: u64) -> bool {
        self.by_id.values().chain(self.owned.values()).any(|key| key.due(now_ms))
    }

    fn make(&self, description: String, manager: Manager, tags: BTreeMap<String, String>, now_ms: u64) -> Arc<KmsKey> {
        let uuid = new_uuid();
        let id = uuid::Uuid::from_bytes(uuid).hyphenated().to_string();
        Arc::new(KmsKey {
            arn: self.naming.key_arn(&id),
            id,
            uuid,
            description,
            created_ms: now_ms,
            state: KeyState::Enabled,
            manager,
            rotation_days: None,
            rotated_ms: now_ms,
            on_demand_rotations: 0,
            versions: vec![Material::random()],
            tags,
        })
    }

    /// Changes a customer key (AWS-managed keys take no changes: KMS's answer).
    fn edit_customer(
        &mut self,
        reference: &str,
        edit: impl FnOnce(&mut KmsKey) -> Result<(), OpError>,
    ) -> Result<Option<Arc<KmsKey>>, OpError> {
        let key = self.find(reference)?;
        if key.manager != Manager::Customer {
            return Err(OpError::new(ErrorCode::UnsupportedOperation, format!("{} is an AWS managed key: it cannot be changed.", key.arn)));
        }
        let mut next = clone_key(key);
        edit(&mut next)?;
        let next = Arc::new(next);
        self.by_id.insert(next.id.clone(), next.clone());
        Ok(Some(next))
    }

    /// The metadata file's `kms` section: every version of every key's material sealed under `root`.
    pub fn to_json(&self, root: &RootKey) -> Value {
        let key_json = |key: &KmsKey| {
            let versions: Vec<String> =
                key.versions.iter().enumerate().map(|(version, material)| root.wrap(&material.0, &key.id, version as u32)).collect();
            let (manager, service) = match &key.manager {
                Manager::Customer => ("customer", None),
                Manager::Aws(service) => ("aws", Some(service)),
                Manager::Service(service) => ("service", Some(service)),
            };
            json!({
                "id": key.id,
                "description": key.description,
                "created_ms": key.created_ms,
                "state": key.state.name(),
                "deletion_ms": match key.state { KeyState::PendingDeletion { at_ms } => Some(at_ms), _ => None },
                "manager": manager,
                "service": service,
                "rotation_days": key.rotation_days,
                "rotated_ms": key.rotated_ms,
                "on_demand_rotations": key.on_demand_rotations,
                "tags": key.tags,
                "versions": versions,
            })
        };
        let keys: Vec<Value> = self.by_id.values().chain(self.owned.values()).map(|key| key_json(key)).collect();
        let aliases: serde_json::Map<String, Value> = self
            .aliases
            .iter()
            .map(|(name, alias)| (name.clone(), json!({ "key": alias.key_id, "created_ms": alias.created_ms })))
            .collect();
        json!({ "root_key_fingerprint": root.fingerprint(), "keys": keys, "aliases": aliases })
    }

    /// Reads the `kms` section back (it comes from disk: everything is checked). Keys need the
    /// root key they were sealed under: without it, or with another, the start is refused.
    pub fn from_json(naming: KeyNaming, value: &Value, root: Option<&RootKey>) -> Result<Keys, String> {
        let mut keys = Keys::new(naming);
        if value.is_null() {
            return Ok(keys);
        }
        let listed = value["keys"].as_array().ok_or("kms.keys is not a list")?;
        if listed.is_empty() {
            return Ok(keys);
        }
        let recorded = value["root_key_fingerprint"].as_str().unwrap_or("(not recorded)");
        let root = match root {
            None => {
                return Err(format!(
                    "the data directory holds KMS keys ({}) sealed under a root key (fingerprint {recorded}), and none was given: \
                     start with --root-key-file FILE or {} set to that key",
                    listed.len(),
                    super::root::ENV_KEY
                ))
            }
            Some(root) if root.fingerprint() != recorded => {
                return Err(format!(
                    "the root key given (fingerprint {}) is not the one the data directory's KMS keys are sealed under \
                     (fingerprint {recorded}): start with that key; nothing was changed",
                    root.fingerprint()
                ))
            }
            Some(root) => root,
        };
        for item in listed {
            let text = |field: &str| item[field].as_str().ok_or_else(|| format!("a KMS key's {field} is not text"));
            let number = |field: &str| item[field].as_u64().ok_or_else(|| format!("a KMS key's {field} is not a number"));
            let id = text("id")?.to_owned();
            let uuid = *uuid::Uuid::parse_str(&id).map_err(|_| format!("KMS key id {id:?} is not a UUID"))?.as_bytes();
            let state = match text("state")? {
                "Enabled" => KeyState::Enabled,
                "Disabled" => KeyState::Disabled,
                "PendingDeletion" => KeyState::PendingDeletion { at_ms: number("deletion_ms")? },
                other => return Err(format!("KMS key {id} has an unknown state {other:?}")),
            };
            let service = || item["service"].as_str().map(str::to_owned).ok_or_else(|| format!("KMS key {id} names no service"));
            let manager = match text("manager")? {
                "customer" => Manager::Customer,
                "aws" => Manager::Aws(service()?),
                "service" => Manager::Service(service()?),
                other => return Err(format!("KMS key {id} has an unknown manager {other:?}")),
            };
            let mut versions = Vec::new();
            for (version, wrapped) in item["versions"].as_array().ok_or_else(|| format!("KMS key {id} has no versions"))?.iter().enumerate()
            {
                let wrapped = wrapped.as_str().ok_or_else(|| format!("KMS key {id}'s version {version} is not text"))?;
                let material = root
                    .unwrap(wrapped, &id, version as u32)
                    .ok_or_else(|| format!("KMS key {id}'s material (version {version}) does not open under the root key given"))?;
                versions.push(Arc::new(Material(material)));
            }
            if versions.is_empty() {
                return Err(format!("KMS key {id} has no versions"));
            }
            let tags = item["tags"]
                .as_object()
                .map(|tags| tags.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
                .unwrap_or_default();
            let key = Arc::new(KmsKey {
                arn: keys.naming.key_arn(&id),
                id: id.clone(),
                uuid,
                description: text("description")?.to_owned(),
                created_ms: number("created_ms")?,
                state,
                rotation_days: item["rotation_days"].as_u64().map(|days| days as u32),
                rotated_ms: number("rotated_ms")?,
                on_demand_rotations: item["on_demand_rotations"].as_u64().unwrap_or(0) as u32,
                versions,
                tags,
                manager: manager.clone(),
            });
            match manager {
                Manager::Service(service) => keys.owned.insert(service, key),
                _ => keys.by_id.insert(id, key),
            };
        }
        for (name, alias) in value["aliases"].as_object().ok_or("kms.aliases is not an object")? {
            let key_id = alias["key"].as_str().ok_or_else(|| format!("alias {name} names no key"))?.to_owned();
            if !keys.by_id.contains_key(&key_id) {
                return Err(format!("alias {name} names key {key_id}, which is not held"));
            }
            keys.aliases.insert(name.clone(), Alias { key_id, created_ms: alias["created_ms"].as_u64().unwrap_or(0) });
        }
        Ok(keys)
    }
}

impl KmsKey {
    /// Whether a rotation or the deletion is due by `now_ms`.
    fn due(&self, now_ms: u64) -> bool {
        match self.state {
            KeyState::PendingDeletion { at_ms } => at_ms <= now_ms,
            KeyState::Enabled => self.next_rotation_ms().is_some_and(|at| at <= now_ms),
            KeyState::Disabled => false,
        }
    }
}

/// Gives a new key of a service or of AWS its id and first material from the root key.
fn derive_first(key: &mut Arc<KmsKey>, root: Option<&RootKey>) {
    let Some(root) = root else { return };
    let label = match &key.manager {
        Manager::Aws(service) => format!("aws-managed/{service}"),
        Manager::Service(service) => format!("service-owned/{service}"),
        Manager::Customer => return,
    };
    let key = Arc::get_mut(key).expect("a new key");
    let id_bytes = root.derive(&format!("{label}/id"));
    let uuid = *uuid::Builder::from_random_bytes(id_bytes[..16].try_into().expect("16 bytes")).into_uuid().as_bytes();
    key.uuid = uuid;
    key.id = uuid::Uuid::from_bytes(uuid).hyphenated().to_string();
    key.arn = key.arn.rsplit_once('/').map_or(key.arn.clone(), |(head, _)| format!("{head}/{}", key.id));
    key.versions = vec![Arc::new(Material(root.derive(&format!("{label}/material/0"))))];
}

fn clone_key(key: &KmsKey) -> KmsKey {
    KmsKey {
        id: key.id.clone(),
        uuid: key.uuid,
        arn: key.arn.clone(),
        description: key.description.clone(),
        created_ms: key.created_ms,
        state: key.state,
        manager: key.manager.clone(),
        rotation_days: key.rotation_days,
        rotated_ms: key.rotated_ms,
        on_demand_rotations: key.on_demand_rotations,
        versions: key.versions.clone(),
        tags: key.tags.clone(),
    }
}

/// `alias/` and 1–250 of letters, digits, `/`, `_` and `-`; `alias/aws/` is AWS's.
fn check_alias_name(alias: &str) -> Result<(), OpError> {
    let invalid = |message: String| Err(OpError::new(ErrorCode::InvalidAliasName, message));
    let Some(rest) = alias.strip_prefix("alias/") else {
        return invalid(format!("Alias must start with the prefix \"alias/\": {alias}"));
    };
    if rest.is_empty() || alias.len() > 256 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b)) {
        return invalid(format!("Alias {alias} must be 1 to 256 characters of letters, digits, '/', '_' and '-'."));
    }
    if rest.starts_with("aws/") {
        return invalid(format!("Alias {alias} is reserved for AWS managed keys."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> KeyNaming {
        KeyNaming { region: "us-east-1".into(), account_id: "000000000000".into() }
    }

    #[test]
    fn keys_resolve_by_id_arn_alias_and_alias_arn() {
        let mut keys = Keys::new(naming());
        let key = keys.apply(KeyChange::Create { description: "d".into(), tags: BTreeMap::new() }, 1, None).unwrap().unwrap();
        keys.apply(KeyChange::Alias { alias: "alias/app".into(), key: key.id.clone(), update: false }, 2, None).unwrap();
        for reference in [key.id.clone(), key.arn.clone(), "alias/app".into(), keys.naming.alias_arn("alias/app")] {
            assert_eq!(keys.resolve(&reference).map(|k| k.id.clone()), Some(key.id.clone()), "{reference}");
        }
        assert!(keys.resolve("alias/other").is_none());
        assert_eq!(keys.by_uuid(&key.uuid).unwrap().id, key.id);
        let again = keys.apply(KeyChange::Alias { alias: "alias/app".into(), key: key.id.clone(), update: false }, 3, None);
        assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyExists);
        let reserved = keys.apply(KeyChange::Alias { alias: "alias/aws/mine".into(), key: key.id.clone(), update: false }, 3, None);
        assert_eq!(reserved.unwrap_err().code, ErrorCode::InvalidAliasName);
    }

    #[test]
    fn the_file_keeps_material_sealed_and_gives_it_back_only_under_the_same_root() {
        let mut keys = Keys::new(naming());
        let key = keys.apply(KeyChange::Create { description: "d".into(), tags: BTreeMap::new() }, 1, None).unwrap().unwrap();
        keys.apply(KeyChange::RotateNow { key: key.id.clone() }, 2, None).unwrap();
        keys.apply(KeyChange::Owned { service: "sqs".into() }, 2, None).unwrap();
        let root = RootKey::from_bytes(&[5; 32]);
        let document = keys.to_json(&root);
        let text = document.to_string();
        let material = &keys.resolve(&key.id).unwrap().versions[0].0;
        let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex));
        let back = Keys::from_json(naming(), &document, Some(&root)).unwrap();
        assert_eq!(back.resolve(&key.id).unwrap().versions.len(), 2);
        assert_eq!(back.resolve(&key.id).unwrap().versions[1].0, keys.resolve(&key.id).unwrap().versions[1].0);
        assert!(back.owned("sqs").is_some());
        let missing = Keys::from_json(naming(), &document, None).unwrap_err();
        assert!(missing.contains("none was given"), "{missing}");
        let wrong = Keys::from_json(naming(), &document, Some(&RootKey::from_bytes(&[6; 32]))).unwrap_err();
        assert!(wrong.contains("is not the one"), "{wrong}");
    }

    #[test]
    fn deletion_waits_its_window_and_takes_the_aliases() {
        let mut keys = Keys::new(naming());
        let key = keys.apply(KeyChange::Create { description: "d".into(), tags: BTreeMap::new() }, 0, None).unwrap().unwrap();
        keys.apply(KeyChange::Alias { alias: "alias/x".into(), key: key.id.clone(), update: false }, 0, None).unwrap();
        keys.apply(KeyChange::ScheduleDeletion { key: key.id.clone(), pending_days: 7 }, 0, None).unwrap();
        assert!(!keys.tick_due(7 * DAY_MS - 1));
        assert!(keys.tick_due(7 * DAY_MS));
        keys.apply(KeyChange::Tick, 7 * DAY_MS, None).unwrap();
        assert!(keys.resolve(&key.id).is_none());
        assert!(keys.resolve("alias/x").is_none());
    }
}
