//! Recording core/v1 Events the way client-go's recorder does: repeats of the same event on the same object
//! increment `count` and `lastTimestamp` instead of creating a new object.

use crate::resources;
use crate::store::{Store, now};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Recorder {
    /// (object uid, type, reason, message) -> event name
    seen: Mutex<HashMap<(String, String, String, String), String>>,
}

pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

impl Recorder {
    /// Record an event `(type, reason, message)` about `obj`. `field_path` is e.g. `spec.containers{web}`.
    pub fn record(
        &self,
        store: &Store,
        source: &Source<'_>,
        obj: &Value,
        field_path: Option<&str>,
        event: (&str, &str, &str),
    ) {
        let (type_, reason, message) = event;
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("default");
        let uid = meta["uid"].as_str().unwrap_or_default().to_string();
        let key = (
            uid.clone(),
            type_.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let ts = now();
        if let Some(name) = seen.get(&key) {
            let bumped = store.modify(resources::events(), ns, name, false, false, |e| {
                let mut e = e.clone();
                e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                e["lastTimestamp"] = json!(ts);
                e["metadata"]["resourceVersion"] = Value::Null;
                Ok(e)
            });
            if bumped.is_ok() {
                return;
            }
        }
        let name = format!(
            "{}.{:x}",
            meta["name"].as_str().unwrap_or("object"),
            nanos()
        );
        let mut involved = json!({
            "kind": obj["kind"], "namespace": ns, "name": meta["name"], "uid": uid,
            "apiVersion": obj["apiVersion"], "resourceVersion": meta["resourceVersion"],
        });
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let event = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason, "message": message, "type": type_,
            "source": {"component": source.component, "host": source.host},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "reportingComponent": source.component, "reportingInstance": source.host.unwrap_or(""),
            "eventTime": null,
        });
        if store.create(resources::events(), ns, event, false).is_ok() {
            seen.insert(key, name);
        }
        if seen.len() > 50_000 {
            seen.clear();
        }
    }

    /// Forget events about objects that no longer exist.
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| k.0 != uid);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
