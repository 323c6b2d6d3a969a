//! `invagent inventory hw|sw`: collect one class and print it, without any network, so an
//! administrator can see exactly what the agent would report.

use clap::Args;
use invsync_proto::inventory::Inventory;
use invsync_proto::{Class, Items};

use super::{RootArg, print_lines};
use crate::plan::snapshot_hash;

#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Which inventory: hw or sw.
    #[arg(value_name = "CLASS", value_parser = parse_class)]
    pub class: Class,
    /// Print `{ "class", "hash", "items", "warnings" }` as JSON instead of a listing.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub root: RootArg,
}

fn parse_class(raw: &str) -> Result<Class, String> {
    Class::parse(raw).ok_or_else(|| "the inventory class is hw or sw".to_string())
}

pub fn apply(args: &InventoryArgs) -> anyhow::Result<()> {
    let collected = invsync_collect::collect(args.class, &args.root.root);
    if args.json {
        let inventory = Inventory {
            class: args.class,
            hash: snapshot_hash(&collected.items),
            items: collected.items,
            warnings: collected.warnings,
        };
        return print_lines([serde_json::to_string_pretty(&inventory)?]);
    }
    for w in &collected.warnings {
        eprintln!("warning: {w}");
    }
    print_lines(listing(&collected.items))
}

/// One line per item: the key, then `attr=value` pairs. Keys and values that contain spaces,
/// quotes, `=` or control characters are quoted, so every line splits back unambiguously and
/// nothing read from the machine can drive the terminal.
fn listing(items: &Items) -> Vec<String> {
    items
        .iter()
        .map(|(key, attrs)| {
            let mut line = shown(key);
            for (name, value) in attrs {
                line.push(' ');
                line.push_str(&shown(name));
                line.push('=');
                line.push_str(&shown(value));
            }
            line
        })
        .collect()
}

fn shown(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=');
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_one_line_per_item_with_quoted_values() {
        let mut items = Items::new();
        items.insert(
            "cpu".into(),
            [
                ("model".to_string(), "Xeon E5 v4".to_string()),
                ("cores".into(), "8".into()),
            ]
            .into(),
        );
        items.insert("os".into(), [("name".to_string(), String::new())].into());
        assert_eq!(
            listing(&items),
            vec![
                r#"cpu cores=8 model="Xeon E5 v4""#.to_string(),
                r#"os name="""#.to_string(),
            ]
        );
    }

    #[test]
    fn classes_parse() {
        assert_eq!(parse_class("hw"), Ok(Class::Hw));
        assert!(parse_class("HW").unwrap_err().contains("hw or sw"));
    }
}
