//! Choosing the tag a broken image reference was most likely meant to be, from the tags the registry really has.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Why a tag was chosen; shown to the user and recorded in the episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum TagRule {
    /// An existing tag within a few edits of the written one: a typo.
    Closest { distance: usize },
    /// No plausible typo: the highest plain version tag (`1.27.3`, not `1.28.0-rc1` or `1.27-alpine`).
    NewestStable,
    /// No version tags at all.
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagChoice {
    pub tag: String,
    #[serde(flatten)]
    pub rule: TagRule,
}

/// Choose a replacement for `intended` among `available`, never one in `exclude` (tags already tried).
pub fn choose_tag(intended: &str, available: &[String], exclude: &[String]) -> Option<TagChoice> {
    let candidates: Vec<&str> = available
        .iter()
        .map(String::as_str)
        .filter(|t| *t != intended && !exclude.iter().any(|e| e == t))
        .collect();
    let max_distance = (intended.chars().count() / 4).max(1);
    let closest = candidates
        .iter()
        .map(|t| (edit_distance(intended, t), *t))
        .filter(|(d, _)| *d <= max_distance)
        .min_by(|(da, a), (db, b)| da.cmp(db).then_with(|| compare_versions(b, a)));
    if let Some((distance, tag)) = closest {
        return Some(TagChoice {
            tag: tag.to_string(),
            rule: TagRule::Closest { distance },
        });
    }
    if let Some(tag) = candidates
        .iter()
        .filter(|t| stable_version(t).is_some())
        .max_by(|a, b| compare_versions(a, b))
    {
        return Some(TagChoice {
            tag: tag.to_string(),
            rule: TagRule::NewestStable,
        });
    }
    candidates.contains(&"latest").then(|| TagChoice {
        tag: "latest".to_string(),
        rule: TagRule::Latest,
    })
}

/// The `n` tags nearest to `intended` by edit distance (ties: the newer version first), to show a planner what
/// exists instead of only what failed.
pub fn closest_tags(intended: &str, available: &[String], n: usize) -> Vec<String> {
    let mut ranked: Vec<(usize, &String)> = available
        .iter()
        .filter(|t| t.as_str() != intended)
        .map(|t| (edit_distance(intended, t), t))
        .collect();
    ranked.sort_by(|(da, a), (db, b)| da.cmp(db).then_with(|| compare_versions(b, a)));
    ranked.into_iter().take(n).map(|(_, t)| t.clone()).collect()
}

/// `1`, `1.27`, `v1.27.3`: plain numeric versions without a pre-release or variant suffix.
fn stable_version(tag: &str) -> Option<Vec<u64>> {
    let digits = tag.strip_prefix('v').unwrap_or(tag);
    let parts: Option<Vec<u64>> = digits.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty() && p.len() <= 4)
}

/// Versions compare numerically (`1.10` > `1.9`), and a longer version of the same prefix is newer and more
/// specific (`1.27.3` > `1.27`); non-versions sort below versions, by name.
fn compare_versions(a: &str, b: &str) -> Ordering {
    match (stable_version(a), stable_version(b)) {
        (Some(va), Some(vb)) => va.cmp(&vb),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chooses_like_an_sre_would() {
        let nginx = tags(&[
            "1.25",
            "1.25.5",
            "1.26",
            "1.26.2",
            "1.27",
            "1.27.3",
            "1.28.0-rc1",
            "alpine",
            "latest",
            "stable",
        ]);
        let cases: &[(&str, &[String], &[&str], Option<(&str, TagRule)>)] = &[
            // The seed's scenario: not a typo of anything, so the newest stable release.
            (
                "bu-tag-yok",
                &nginx,
                &[],
                Some(("1.27.3", TagRule::NewestStable)),
            ),
            (
                "1.27.O",
                &nginx,
                &[],
                Some(("1.27.3", TagRule::Closest { distance: 1 })),
            ),
            (
                "lates",
                &nginx,
                &[],
                Some(("latest", TagRule::Closest { distance: 1 })),
            ),
            (
                "alpnie",
                &nginx,
                &[],
                Some(("alpine", TagRule::Closest { distance: 1 })),
            ),
            // Equal distance: the newer version wins.
            (
                "1.29",
                &nginx,
                &[],
                Some(("1.27", TagRule::Closest { distance: 1 })),
            ),
            // An excluded (already failed) tag is never chosen again.
            (
                "bu-tag-yok",
                &nginx,
                &["1.27.3"],
                Some(("1.27", TagRule::NewestStable)),
            ),
            (
                "v1.2.3x",
                &tags(&["v1.2.2", "v1.10.0", "main"]),
                &[],
                Some(("v1.10.0", TagRule::NewestStable)),
            ),
            (
                "nope",
                &tags(&["latest", "edge"]),
                &[],
                Some(("latest", TagRule::Latest)),
            ),
            ("nope", &tags(&["edge"]), &[], None),
            ("nope", &[], &[], None),
            ("latest", &tags(&["latest"]), &[], None),
        ];
        for (intended, available, exclude, want) in cases {
            let exclude = tags(exclude);
            let got = choose_tag(intended, available, &exclude);
            let want = want.clone().map(|(t, rule)| TagChoice {
                tag: t.to_string(),
                rule,
            });
            assert_eq!(
                got, want,
                "intended {intended:?} among {available:?} excluding {exclude:?}"
            );
        }
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.27.3", "1.27"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "alpine"), Ordering::Greater);
        assert_eq!(stable_version("1.28.0-rc1"), None);
        assert_eq!(stable_version("1.2.3.4.5"), None);
    }

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
            ("1.27.O", "1.27.0", 1),
            ("ü", "u", 1),
            ("alpnie", "alpine", 1),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn closest_tags_rank_by_distance_then_newest() {
        let tags: Vec<String> = ["1.25", "1.27", "1.27.3", "1.28.0-rc1", "latest", "alpine"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(closest_tags("1.27.O", &tags, 3), ["1.27.3", "1.27", "1.25"]);
        assert_eq!(closest_tags("1.27", &tags, 2), ["1.25", "1.27.3"]);
        assert!(closest_tags("x", &[], 3).is_empty());
    }
}
