//! The custom inventory on this machine (`--root /`), against the directory itself: every
//! `custom/<name>` item comes from a file of `etc/invagent/inventory.d` named `<name>.json`,
//! `<name>.toml` or `<name>[.ext]`, and where the directory does not exist there is no custom
//! item, nothing to keep and no warning about it.

use std::path::Path;

use invsync_collect::hw::custom::DIR;
use invsync_collect::{CollectOptions, collect_with};
use invsync_proto::Class;

#[test]
fn custom_items_come_from_the_files_of_the_directory() {
    let options = CollectOptions::default();
    let got = collect_with(Class::Hw, Path::new("/"), &options);
    let custom: Vec<&str> = got
        .items
        .keys()
        .filter_map(|k| k.strip_prefix("custom/"))
        .collect();
    match std::fs::read_dir(Path::new("/").join(DIR)) {
        Err(_) => {
            assert_eq!(custom, Vec::<&str>::new());
            assert_eq!(got.keep_previous, Vec::<String>::new());
            assert!(
                !got.warnings.iter().any(|w| w.contains(DIR)),
                "{:?}",
                got.warnings
            );
        }
        Ok(entries) => {
            let stems: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .flat_map(|n| {
                    let data = n.strip_suffix(".json").or_else(|| n.strip_suffix(".toml"));
                    let script = n.split('.').next().unwrap_or("");
                    [data.unwrap_or(script).to_string(), script.to_string()]
                })
                .collect();
            let kept = got
                .keep_previous
                .iter()
                .filter_map(|k| k.strip_prefix("custom/"));
            for name in custom.iter().copied().chain(kept) {
                assert!(stems.iter().any(|s| s == name), "{name} not in {stems:?}");
            }
        }
    }
}
