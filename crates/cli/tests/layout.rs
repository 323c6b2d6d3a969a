//! The workspace's shape, checked: no import circles between a crate's files, the crates'
//! dependency rules, and a map (ARCHITECTURE.md) that names only paths that exist.
//!
//! These read the source tree as text; they build nothing and start nothing. The import graph
//! is a file-level one: an edge goes from a file to every other file of the same crate whose
//! items it names (`use crate::…`, `super::…`, `self::…` and the same paths written inline),
//! following a module's re-exports (`pub use x::Y`) to the file that defines the item. A child
//! naming what one of its ancestors defines is not an edge (a module may lean on the module it
//! sits in; the parent composes its children), so a circle is a group of files that each need
//! the others, the kind that makes one file impossible to understand or test without all of
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A module's path inside its crate: `[]` for lib.rs, `["api", "body"]` for api/body.rs.
type ModPath = Vec<String>;

struct Module {
    file: PathBuf,
    /// Code with comments, strings and char literals blanked.
    code: String,
}

fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): blank only the former.
            let rest = &b[i + 1..];
            let len = if rest.first() == Some(&b'\\') {
                rest.iter().position(|&x| x == b'\'').map(|p| p + 1)
            } else if rest.len() > 1 && rest[1] == b'\'' {
                Some(2)
            } else {
                std::str::from_utf8(&rest[..rest.len().min(5)])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .filter(|ch| !ch.is_ascii())
                    .map(|ch| ch.len_utf8() + 1)
            };
            match len {
                Some(n) => {
                    out.push_str("' '");
                    i += 1 + n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every module file of a crate (`src/`, without `src/bin/`), by module path.
fn modules(src: &Path) -> BTreeMap<ModPath, Module> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(src).unwrap();
            if path.is_dir() {
                if rel != Path::new("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let last = parts.last().unwrap().as_str();
            if last == "mod" || (parts.len() == 1 && (last == "lib" || last == "main")) {
                parts.pop();
            }
            let code = strip(&std::fs::read_to_string(&path).unwrap());
            found.insert(
                parts,
                Module {
                    file: rel.to_path_buf(),
                    code,
                },
            );
        }
    }
    found
}

/// The paths a `use` tree names, expanded: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let t = tree.split(" as ").next().unwrap().trim();
        return vec![t.to_string()];
    };
    let prefix = &tree[..open];
    let close = tree.rfind('}').unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        for sub in expand(part) {
            if sub == "self" {
                out.push(prefix.trim_end_matches("::").to_string());
            } else {
                out.push(format!("{prefix}{sub}"));
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The crate-relative paths a module's code names: each `use` statement's expanded paths, and
/// every inline path that starts with `crate::`, `super::`, `self::` or the name of one of the
/// module's children (`children`). With each, whether it
/// is a public re-export (`pub use` / `pub(crate) use`).
fn named_paths(code: &str, children: &[&str]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest_of_code = String::with_capacity(code.len());
    let mut i = 0;
    let bytes = code.as_bytes();
    while i < code.len() {
        let at_word = i == 0 || !is_ident(bytes[i - 1] as char);
        if at_word && code[i..].starts_with("use ") {
            let end = code[i..].find(';').map(|e| i + e).unwrap_or(code.len());
            let before = code[..i].trim_end();
            let public = before.ends_with("pub")
                || before.ends_with(')') && {
                    let open = before.rfind("pub(").unwrap_or(0);
                    before[open..].starts_with("pub(")
                };
            for path in expand(&code[i + 4..end]) {
                out.push((path, public));
            }
            i = end;
            continue;
        }
        let ch = code[i..].chars().next().unwrap();
        rest_of_code.push(ch);
        i += ch.len_utf8();
    }
    let b = rest_of_code.as_bytes();
    let starts: Vec<String> = ["crate", "super", "self"]
        .iter()
        .chain(children)
        .map(|s| format!("{s}::"))
        .collect();
    for start in &starts {
        let mut from = 0;
        while let Some(pos) = rest_of_code[from..].find(start) {
            let at = from + pos;
            from = at + start.len();
            if at > 0 && (is_ident(b[at - 1] as char) || b[at - 1] == b':') {
                continue;
            }
            let end = rest_of_code[at..]
                .find(|c: char| !(is_ident(c) || c == ':'))
                .map(|e| at + e)
                .unwrap_or(rest_of_code.len());
            out.push((
                rest_of_code[at..end].trim_end_matches(':').to_string(),
                false,
            ));
        }
    }
    out
}

/// Where a path named in module `from` leads: the module path it starts from and its segments.
fn absolute(from: &ModPath, path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut out: Vec<String>;
    let mut segs = segs.as_slice();
    match segs.first() {
        Some(&"crate") => {
            out = Vec::new();
            segs = &segs[1..];
        }
        Some(&"self") => {
            out = from.clone();
            segs = &segs[1..];
        }
        Some(&"super") => {
            out = from.clone();
            while segs.first() == Some(&"super") {
                out.pop()?;
                segs = &segs[1..];
            }
        }
        // A path from a `use` that starts at a child module of this one (`use queries::X`),
        // or at an external crate; children are resolved below, the rest ignored.
        Some(_) => out = from.clone(),
        None => return None,
    }
    out.extend(segs.iter().map(|s| s.to_string()));
    Some(out)
}

/// The names of a module's child modules.
fn children<'a>(modules: &'a BTreeMap<ModPath, Module>, of: &ModPath) -> Vec<&'a str> {
    modules
        .keys()
        .filter(|k| k.len() == of.len() + 1 && k.starts_with(of))
        .map(|k| k.last().unwrap().as_str())
        .collect()
}

struct Crate {
    modules: BTreeMap<ModPath, Module>,
    /// Per module: re-exported name -> the absolute path it re-exports.
    reexports: HashMap<ModPath, HashMap<String, Vec<String>>>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let modules = modules(src);
        let mut reexports: HashMap<ModPath, HashMap<String, Vec<String>>> = HashMap::new();
        for (mp, m) in &modules {
            for (path, public) in named_paths(&m.code, &children(&modules, mp)) {
                if !public {
                    continue;
                }
                if let Some(abs) = absolute(mp, &path)
                    && let Some(last) = abs.last()
                    && last != "*"
                {
                    reexports
                        .entry(mp.clone())
                        .or_default()
                        .insert(last.clone(), abs);
                }
            }
        }
        Crate { modules, reexports }
    }

    /// The module file an absolute path's item lives in, following re-exports.
    fn resolve(&self, abs: &[String], depth: usize) -> Option<ModPath> {
        let mut module: ModPath = Vec::new();
        let mut i = 0;
        while i < abs.len() {
            let mut next = module.clone();
            next.push(abs[i].clone());
            if self.modules.contains_key(&next) {
                module = next;
                i += 1;
            } else {
                break;
            }
        }
        if i < abs.len()
            && depth < 8
            && let Some(target) = self.reexports.get(&module).and_then(|r| r.get(&abs[i]))
            && target.as_slice() != abs
        {
            let mut full = target.clone();
            full.extend(abs[i + 1..].iter().cloned());
            if let Some(found) = self.resolve(&full, depth + 1) {
                return Some(found);
            }
        }
        Some(module)
    }

    /// File-level edges: from each module to the modules whose items it names, without a
    /// module's edges to itself and to its ancestors.
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (mp, m) in &self.modules {
            let out = edges.entry(mp.clone()).or_default();
            for (path, public) in named_paths(&m.code, &children(&self.modules, mp)) {
                let Some(abs) = absolute(mp, &path) else {
                    continue;
                };
                let Some(target) = self.resolve(&abs, 0) else {
                    continue;
                };
                // A module's own re-export of its child is its public face, not a use of it.
                if public && target.starts_with(mp) {
                    continue;
                }
                if target == *mp || mp.starts_with(&target) {
                    continue;
                }
                out.insert(target);
            }
        }
        edges
    }

    fn file(&self, m: &ModPath) -> String {
        self.modules[m].file.display().to_string()
    }
}

/// Groups of more than one module that reach each other (Tarjan's strongly connected components).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct T<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a ModPath) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                if !t.edges.contains_key(w) {
                    continue;
                }
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn crate_circles(name: &str) -> Vec<String> {
    let krate = Crate::read(&workspace().join("crates").join(name).join("src"));
    circles(&krate.edges())
        .iter()
        .map(|group| {
            let files: Vec<String> = group.iter().map(|m| krate.file(m)).collect();
            format!(
                "crates/{name}/src: {} files: {}",
                files.len(),
                files.join(", ")
            )
        })
        .collect()
}

#[test]
fn the_checker_finds_a_circle_and_follows_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("api")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "mod api; mod server; pub use server::State;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("server.rs"),
        "use crate::api::router;\npub struct State; // crate::api::x\nfn s() { let _ = \"crate::api\"; }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("api/mod.rs"),
        "mod x;\npub fn router() { x::handler(); }\n",
    )
    .unwrap();
    // Through the crate root's re-export: x.rs needs server.rs, which needs api/mod.rs.
    std::fs::write(
        src.join("api/x.rs"),
        "use crate::{State, api::router as _};\npub fn handler() {}\n",
    )
    .unwrap();
    let krate = Crate::read(src);
    let found = circles(&krate.edges());
    assert_eq!(found.len(), 1, "{:?}", found);
    let files: Vec<String> = found[0].iter().map(|m| krate.file(m)).collect();
    assert_eq!(files, ["api/mod.rs", "api/x.rs", "server.rs"]);

    // Without the handler's use of the state there is no circle: a child naming its parent's
    // items (api/x.rs -> api/mod.rs) is not an edge.
    std::fs::write(
        src.join("api/x.rs"),
        "use super::router;\npub fn handler() {}\n",
    )
    .unwrap();
    assert!(circles(&Crate::read(src).edges()).is_empty());
}

#[test]
fn no_import_circles_in_any_crate() {
    let mut found = Vec::new();
    let mut crates: Vec<String> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert!(crates.len() >= 9, "crates found: {crates:?}");
    for name in &crates {
        found.extend(crate_circles(name));
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The paths a Markdown text names in backticks: tokens with a `/` inside (not a URL path, which
/// starts with one), or a file name with a source or document ending. Each comes with the crate
/// whose section (a heading naming one crate, `### \`crates/site\``) it stands in, if any:
/// there a path may be written from that crate's `src/`.
fn named_files(text: &str) -> Vec<(Option<String>, String)> {
    let mut found = Vec::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') {
            let crates: Vec<&str> = line
                .split('`')
                .filter(|t| t.starts_with("crates/") && !t.contains(' '))
                .collect();
            section = (crates.len() == 1).then(|| crates[0].trim_end_matches('/').to_string());
            continue;
        }
        for (i, token) in line.split('`').enumerate() {
            // Odd pieces are inside backticks (no code span in this text crosses a line).
            if i % 2 == 0 || token.is_empty() || token.contains(char::is_whitespace) {
                continue;
            }
            let plain = token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
            let file_like = [".rs", ".md", ".toml", ".sh", ".sql", ".service", ".lock"]
                .iter()
                .any(|ext| token.ends_with(ext));
            if plain
                && !token.starts_with('/')
                && !token.starts_with('.')
                && (token.contains('/') || file_like)
            {
                found.push((section.clone(), token.trim_end_matches('/').to_string()));
            }
        }
    }
    found
}

#[test]
fn the_map_names_only_paths_that_exist() {
    let root = workspace();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= 200,
        "ARCHITECTURE.md is a map: at most 200 lines, not {lines}"
    );
    let named = named_files(&text);
    assert!(
        named.len() > 20,
        "ARCHITECTURE.md names only {} paths",
        named.len()
    );
    let exists = |(section, path): &(Option<String>, String)| {
        root.join(path).exists()
            || section
                .as_ref()
                .is_some_and(|krate| root.join(krate).join("src").join(path).exists())
    };
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exists(n))
        .map(|(_, p)| p)
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_path_finder_reads_backticked_paths_only() {
    let text = "`crates/site/src/http.rs` and `/healthz`, `Cargo.toml`, `a b/c`, plain/path,\n\
                `crates/store/src/`, `invsite serve`\n\
                ### `crates/site`\n\
                `api/body.rs`\n\
                ### `crates/admin`, `crates/cli`\n\
                `bin/x.rs`\n";
    let site = Some("crates/site".to_string());
    let expected = [
        (None, "crates/site/src/http.rs"),
        (None, "Cargo.toml"),
        (None, "crates/store/src"),
        (site, "api/body.rs"),
        (None, "bin/x.rs"),
    ];
    assert_eq!(named_files(text), expected.map(|(s, p)| (s, p.to_string())));
}

/// The workspace crates a crate's `[dependencies]` name (not its dev- or build-dependencies).
fn workspace_deps(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && line.starts_with("invsync-") {
            let name = line.split(['.', ' ', '=']).next().unwrap();
            deps.push(name.trim_start_matches("invsync-").to_string());
        }
    }
    deps.sort();
    deps
}

/// The crate graph ARCHITECTURE.md draws: which workspace crates each crate may use. The site
/// and the agent are peers (neither uses the other; what both need is `client`), the store and
/// the HTTP client stand on `proto` alone, and only `cli` (the binaries) sees everything.
#[test]
fn each_crate_uses_only_the_crates_the_map_allows() {
    let allowed: &[(&str, &[&str])] = &[
        ("proto", &[]),
        ("collect", &["proto"]),
        ("client", &["proto"]),
        ("store", &["proto"]),
        ("agent", &["client", "collect", "proto"]),
        ("site", &["client", "proto", "store"]),
        ("admin", &["client", "proto", "site"]),
        ("loadgen", &["proto"]),
        (
            "cli",
            &[
                "admin", "agent", "client", "collect", "proto", "site", "store",
            ],
        ),
    ];
    let crates = workspace().join("crates");
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let manifest = std::fs::read_to_string(crates.join(&name).join("Cargo.toml")).unwrap();
        let Some((_, may)) = allowed.iter().find(|(n, _)| *n == name) else {
            wrong.push(format!(
                "crates/{name} is not in the map: add it to ARCHITECTURE.md and here"
            ));
            continue;
        };
        for dep in workspace_deps(&manifest) {
            if !may.contains(&dep.as_str()) {
                wrong.push(format!("crates/{name} depends on invsync-{dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_dependency_reader_takes_only_normal_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\ninvsync-proto.workspace = true\n\
                    invsync-store = { workspace = true }\nserde = \"1\"\n\
                    [dev-dependencies]\ninvsync-agent.workspace = true\n";
    assert_eq!(workspace_deps(manifest), ["proto", "store"]);
}
