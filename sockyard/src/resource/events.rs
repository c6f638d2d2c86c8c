//! Change events and the rules of resource channels: after a write commits, `{event:
//! created|updated|patched|destroyed, data: record}` goes out on `<resource>` and
//! `<resource>/<id>` (for records read by their owner only: `<resource>/<id>` and
//! `<resource>/owner/<owner>`); subscriptions follow the read rule; clients may not publish
//! there.

use serde_json::{json, Value};

use super::operations::{store_error, Operation, Resources};
use super::schema::{Access, ResourceDef};
use super::store::{Record, Scope};
use crate::auth::Claims;
use crate::error::ApiError;
use crate::router::Context;

impl Operation {
    /// The change event a successful write announces (reads announce nothing).
    pub(super) fn event(self) -> &'static str {
        match self {
            Self::Create => "created",
            Self::Update => "updated",
            Self::Patch => "patched",
            _ => "destroyed",
        }
    }
}

impl Resources {
    /// Publishes a change on `<resource>` and `<resource>/<id>`; records of resources read by
    /// their owner only go to `<resource>/<id>` and `<resource>/owner/<owner>`.
    pub(super) async fn announce(
        &self,
        ctx: &Context,
        resource: &str,
        event: &str,
        record: &Record,
    ) {
        let Ok(def) = self.def(resource) else { return };
        let message = json!({"event": event, "data": record});
        let id = record.get("id").and_then(Value::as_i64).unwrap_or_default();
        let mut channels = vec![format!("{resource}/{id}")];
        if def.read == Access::Owner {
            if let Some(owner) = record.get("owner").and_then(Value::as_str) {
                channels.push(format!("{resource}/owner/{owner}"));
            }
        } else {
            channels.push(resource.to_owned());
        }
        for channel in channels {
            if let Err(err) = ctx.publish(&channel, &message).await {
                tracing::warn!(channel, error = %err, "could not announce a change");
            }
        }
    }

    /// Checks a subscription to a resource channel: `<resource>` and `<resource>/<id>` follow
    /// the read rule (for owner-read resources, the record must be the caller's, and
    /// `<resource>/owner/<x>` is open to the owner `x` only). `None`: not a resource channel.
    pub async fn check_subscribe(
        &self,
        channel: &str,
        claims: Option<&Claims>,
    ) -> Option<Result<(), ApiError>> {
        let (resource, rest) = channel.split_once('/').unwrap_or((channel, ""));
        let def = self.inner.defs.iter().find(|d| d.name == resource)?;
        Some(self.subscribe_rule(def, rest, claims).await)
    }

    /// The read rule for a channel of `def` below its name (`rest`: empty, an id, or
    /// `owner/<x>`).
    async fn subscribe_rule(
        &self,
        def: &ResourceDef,
        rest: &str,
        claims: Option<&Claims>,
    ) -> Result<(), ApiError> {
        def.check_read(claims)?;
        if def.read != Access::Owner {
            return Ok(());
        }
        let forbidden = || {
            ApiError::new(
                crate::auth::access::FORBIDDEN,
                format!("Not allowed to read these {} records", def.name),
            )
        };
        let owner = def.owner_of(claims).ok_or_else(forbidden)?;
        if let Some(value) = rest.strip_prefix("owner/") {
            return if Some(value) == owner.as_str() {
                Ok(())
            } else {
                Err(forbidden())
            };
        }
        let id: i64 = rest.parse().map_err(|_| forbidden())?;
        let scope = Scope {
            owner: Some(owner),
            parent: None,
        };
        match self
            .inner
            .store
            .get(def, id, &scope)
            .await
            .map_err(store_error)?
        {
            Some(_) => Ok(()),
            None => Err(forbidden()),
        }
    }

    /// Whether `channel` belongs to a resource (clients may not publish there).
    pub fn is_resource_channel(&self, channel: &str) -> bool {
        let resource = channel.split('/').next().unwrap_or(channel);
        self.inner.defs.iter().any(|d| d.name == resource)
    }
}
