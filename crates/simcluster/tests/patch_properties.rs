//! Property tests for patch semantics: what must hold for any object and any patch, not only for the examples.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use simcluster::patch::{json_patch, merge_patch, strategic_merge_patch};

/// Arbitrary JSON, a few levels deep, with keys from a small alphabet so patches and targets overlap.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-100i64..100).prop_map(|n| json!(n)),
        "[a-z]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-d]", json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn containers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map("[a-f]{1,3}", "[a-z]{1,5}:[0-9]", 1..5)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    /// RFC 7386: applying the same merge patch twice changes nothing the second time.
    #[test]
    fn merge_patch_is_idempotent(target in object(), patch in object()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        prop_assert_eq!(once, twice);
    }

    /// A merge patch never leaves a null behind: null means delete.
    #[test]
    fn merge_patch_leaves_no_top_level_nulls(target in object(), patch in object()) {
        let mut t = target.clone();
        merge_patch(&mut t, &patch);
        for (k, v) in patch.as_object().into_iter().flatten() {
            if v.is_null() {
                prop_assert!(t.get(k).is_none());
            }
        }
    }

    /// `kubectl set image`: a strategic merge patch naming one container changes that container's image and
    /// nothing else, whatever the other containers are.
    #[test]
    fn strategic_merge_set_image_touches_one_container(cs in containers(), pick in any::<prop::sample::Index>(), image in "[a-z]{1,5}:[0-9]") {
        let pod = json!({"spec": {"containers": cs.iter().map(|(n, i)| json!({"name": n, "image": i, "ports": [{"containerPort": 80}]})).collect::<Vec<_>>()}});
        let (name, _) = &cs[pick.index(cs.len())];
        let mut patched = pod.clone();
        strategic_merge_patch(&mut patched, &json!({"spec": {"containers": [{"name": name, "image": image}]}}));
        let before = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        let after = patched["spec"]["containers"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            if b["name"] == name.as_str() {
                prop_assert_eq!(&a["image"], &json!(image));
                prop_assert_eq!(&a["ports"], &b["ports"]);
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }

    /// Strategic merge of a container list by name never duplicates a name.
    #[test]
    fn strategic_merge_keeps_container_names_unique(a in containers(), b in containers()) {
        let mut pod = json!({"spec": {"containers": a.iter().map(|(n, i)| json!({"name": n, "image": i})).collect::<Vec<_>>()}});
        let patch = json!({"spec": {"containers": b.iter().map(|(n, i)| json!({"name": n, "image": i})).collect::<Vec<_>>()}});
        strategic_merge_patch(&mut pod, &patch);
        let names: Vec<&str> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(names.len(), unique.len());
    }

    /// RFC 6902: adding a new member and removing it again restores the document.
    #[test]
    fn json_patch_add_then_remove_round_trips(target in object(), value in json_value()) {
        let mut t = target.clone();
        let ops = json!([{"op": "add", "path": "/zz", "value": value}, {"op": "remove", "path": "/zz"}]);
        prop_assert!(json_patch(&mut t, &ops).is_ok());
        prop_assert_eq!(t, target);
    }
}
