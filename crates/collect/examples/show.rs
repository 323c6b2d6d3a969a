//! Prints one class of the inventory of this machine (or of `ROOT`) as JSON, for looking at
//! what the collectors see: `cargo run -p invsync-collect --example show -- hw|sw [ROOT]`.

use std::path::PathBuf;

use invsync_proto::Class;

fn main() {
    let mut args = std::env::args().skip(1);
    let class = args
        .next()
        .as_deref()
        .and_then(Class::parse)
        .unwrap_or(Class::Hw);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "/".into()));
    let c = invsync_collect::collect(class, &root);
    for (key, attrs) in &c.items {
        let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        println!("{key}: {}", attrs.join(" "));
    }
    for w in &c.warnings {
        println!("warning: {w}");
    }
}
