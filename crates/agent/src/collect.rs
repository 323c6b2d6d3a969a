//! One class's inventory as a cycle reports it, for the network cycle (`cycle.rs`) and the
//! file-share cycle (`offline/cycle.rs`) alike: what the collectors read, plus the items they
//! could not refresh this time (a custom inventory script that failed or timed out) copied
//! from the snapshot the site last acknowledged, so a failing script does not make its facts
//! look removed.

use std::path::Path;

use invsync_proto::{Class, Items};

use crate::state::State;

/// Collects `class` under `root` and keeps the acknowledged items the collectors asked to
/// keep.
pub(crate) fn collect_class(root: &Path, state: &State, class: Class) -> Items {
    let collected = invsync_collect::collect(class, root);
    for warning in &collected.warnings {
        tracing::debug!(class = %class, warning = %warning, "Collector could not read something.");
    }
    let acked = state.acked.get(&class).map(|a| &a.items);
    keep_previous(collected.items, &collected.keep_previous, acked)
}

/// Adds to `items` the item of each key in `keep` that `acked` holds. An item the collector
/// produced after all stays as produced; a key the acknowledged snapshot lacks (a script that
/// never succeeded) stays absent.
pub(crate) fn keep_previous(mut items: Items, keep: &[String], acked: Option<&Items>) -> Items {
    for key in keep {
        if items.contains_key(key) {
            continue;
        }
        if let Some(previous) = acked.and_then(|a| a.get(key)) {
            tracing::info!(item = %key, "Kept the acknowledged item, as its source could not be read this time.");
            items.insert(key.clone(), previous.clone());
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::Attrs;

    fn item(v: &str) -> Attrs {
        [("rack".to_string(), v.to_string())].into_iter().collect()
    }

    #[test]
    fn kept_keys_come_from_the_acknowledged_snapshot_only() {
        let acked: Items = [
            ("custom/rack".to_string(), item("B12")),
            ("custom/gone".to_string(), item("x")),
        ]
        .into_iter()
        .collect();
        let fresh: Items = [("custom/new".to_string(), item("A1"))]
            .into_iter()
            .collect();
        let keep = vec!["custom/rack".to_string(), "custom/never".to_string()];
        let got = keep_previous(fresh.clone(), &keep, Some(&acked));
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(keys, ["custom/new", "custom/rack"]);
        assert_eq!(got["custom/rack"], item("B12"));
        assert_eq!(keep_previous(fresh.clone(), &keep, None), fresh);
        // What the collector produced wins over the acknowledged item.
        let produced: Items = [("custom/rack".to_string(), item("C3"))]
            .into_iter()
            .collect();
        assert_eq!(
            keep_previous(produced.clone(), &keep, Some(&acked)),
            produced
        );
    }
}
