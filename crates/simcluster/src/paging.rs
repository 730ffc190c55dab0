//! List pagination as the API server does it: `limit` caps a page, `metadata.continue` is an opaque token for the
//! next one (base64 of `{"v","rv","start"}`, as the real one encodes it), `remainingItemCount` says how many follow,
//! and every page of one list reports the first page's resourceVersion, so a watch started from it misses nothing.
//! Items come in key order (namespace, then name). Clients such as kube-rs's watcher list in pages of 500.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashMap;

fn key(o: &Value) -> String {
    format!(
        "{}/{}",
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// One page of `items` (already filtered, in key order) listed at `rv`: the page, the resourceVersion to report,
/// and the list metadata's `continue` and `remainingItemCount` when more follow.
pub fn page(
    items: Vec<Value>,
    rv: u64,
    params: &HashMap<String, String>,
) -> Result<(Vec<Value>, Value), ApiError> {
    let limit = match params.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
        ),
    };
    let (list_rv, start) = match params.get("continue").filter(|c| !c.is_empty()) {
        None => (rv, None),
        Some(token) => {
            let bad = || {
                ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                )
            };
            let decoded = STANDARD.decode(token).map_err(|_| bad())?;
            let t: Value = serde_json::from_slice(&decoded).map_err(|_| bad())?;
            match (t["v"].as_str(), t["rv"].as_u64(), t["start"].as_str()) {
                (Some("meta.k8s.io/v1"), Some(rv), Some(start)) => (rv, Some(start.to_string())),
                _ => return Err(bad()),
            }
        }
    };
    let mut rest: Vec<Value> = match &start {
        None => items,
        Some(s) => items
            .into_iter()
            .filter(|o| key(o).as_str() > s.as_str())
            .collect(),
    };
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(limit) = limit
        && rest.len() > limit
    {
        let remaining = rest.len() - limit;
        rest.truncate(limit);
        let last = rest.last().map(key).unwrap_or_default();
        let token = json!({"v": "meta.k8s.io/v1", "rv": list_rv, "start": last});
        meta["continue"] = json!(STANDARD.encode(token.to_string()));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok((rest, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"metadata": {"namespace": "default", "name": format!("p-{i:03}")}}))
            .collect()
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_follow_each_other_at_the_first_pages_resource_version() {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut rvs = Vec::new();
        // The store moves on between pages (rv 7, then 9): every page reports the first one's.
        for rv in [7, 9, 11] {
            let mut p = params(&[("limit", "4")]);
            if let Some(t) = &token {
                p.insert("continue".into(), t.clone());
            }
            let (items, meta) = page(pods(10), rv, &p).unwrap_or_default();
            seen.extend(items.iter().map(key));
            rvs.push(meta["resourceVersion"].clone());
            token = meta["continue"].as_str().map(String::from);
            if token.is_none() {
                assert!(meta.get("remainingItemCount").is_none());
                break;
            }
            assert!(meta["remainingItemCount"].as_u64().is_some_and(|r| r > 0));
        }
        assert_eq!(seen, pods(10).iter().map(key).collect::<Vec<_>>());
        assert!(rvs.iter().all(|r| r == "7"), "{rvs:?}");
    }

    #[test]
    fn no_limit_is_everything_and_bad_input_is_refused() {
        let (items, meta) = page(pods(3), 5, &params(&[])).unwrap_or_default();
        assert_eq!((items.len(), meta.get("continue")), (3, None));
        for p in [
            params(&[("limit", "x")]),
            params(&[("continue", "not-base64!")]),
            params(&[("continue", &STANDARD.encode("{\"v\":\"other\"}"))]),
        ] {
            assert!(page(pods(3), 5, &p).is_err(), "{p:?}");
        }
    }
}
