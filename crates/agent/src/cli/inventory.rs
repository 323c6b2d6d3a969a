//! `invagent inventory hw|sw`: collect one class and print it, without any network, so an
//! administrator can see exactly what the agent would report; with `--out FILE`, write it as
//! the import file `invsite import` reads, for a machine that was never enrolled.

use clap::Args;
use invsync_proto::inventory::Inventory;
use std::path::PathBuf;

use invsync_proto::{Class, ClientName, Items};

use super::{RootArg, exit_for, print_lines};
use crate::offline::import::{ImportOptions, import_file, write_import_file};
use crate::plan::snapshot_hash;

#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Which inventory: hw or sw.
    #[arg(value_name = "CLASS", value_parser = parse_class)]
    pub class: Class,
    /// Print `{ "class", "hash", "items", "warnings" }` as JSON instead of a listing.
    #[arg(long, conflicts_with = "out")]
    pub json: bool,
    /// Write the inventory to FILE (mode 0600) as an import file for `invsite import FILE`,
    /// instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With --out: the client name the site records (1-15 of A-Z 0-9 - _); by default the
    /// host name's first label.
    #[arg(long, value_name = "NAME", requires = "out")]
    pub name: Option<ClientName>,
    #[command(flatten)]
    pub root: RootArg,
}

fn parse_class(raw: &str) -> Result<Class, String> {
    Class::parse(raw).ok_or_else(|| "the inventory class is hw or sw".to_string())
}

pub fn apply(args: &InventoryArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        let opts = ImportOptions {
            class: args.class,
            root: args.root.root.clone(),
            name: args.name.clone(),
        };
        let file = import_file(&opts).map_err(exit_for)?;
        for w in &file.warnings {
            eprintln!("warning: {w}");
        }
        write_import_file(out, &file).map_err(exit_for)?;
        return print_lines([format!(
            "wrote the {} inventory of {} ({} items, hash {}) to {}; import it with `invsite \
             import {} --data-dir D`",
            file.class,
            file.name,
            file.items.len(),
            file.hash.to_hex(),
            out.display(),
            out.display()
        )]);
    }
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
