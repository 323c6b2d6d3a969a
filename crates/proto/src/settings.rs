//! Layered settings of the two daemons (`invagent run`, `invsite serve`): a value comes from the
//! command line, else the environment, else the configuration file, else its default, and each
//! value remembers where it came from so `invagent config` and `invsite config --show` can say.
//!
//! The file is TOML whose keys are the long flags' names with `_` for `-` (`data_dir`,
//! `interval`). An unknown key or a value that does not parse is refused with the file, the
//! line and the key, never ignored: a typo in a configuration file must not silently leave the
//! default in force.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::exit::Exit;

/// Where a setting's value came from, in the order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    /// The environment variable of that name.
    Environment(&'static str),
    /// A line of the configuration file.
    File {
        path: PathBuf,
        line: usize,
    },
    /// Sent by the site in its check-in answers (the agent's interval only).
    Site,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::CommandLine => f.write_str("command line"),
            Source::Environment(var) => write!(f, "environment {var}"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Site => f.write_str("the site"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// A configuration file's keys, each with its raw value and line.
#[derive(Debug, Default)]
pub struct FileValues {
    pub path: Option<PathBuf>,
    values: BTreeMap<String, (toml::Value, usize)>,
}

/// The line (from 1) of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.matches('\n').count() + 1)
}

impl FileValues {
    /// Reads `path`, a TOML table of plain keys, refusing any key not in `known` (exit 2 with the
    /// file, line and key). `None` and a missing default file give no values.
    pub fn read(path: &Path, known: &[&str]) -> Result<FileValues, Exit> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Exit::usage(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let table: toml::Spanned<toml::Table> = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            Exit::usage(format!(
                "{}:{line}: {}",
                path.display(),
                e.message().trim_end()
            ))
        })?;
        // The spans of the keys, found again in the text: `toml::Table` keeps values, not spans.
        let document: toml::de::DeTable = toml::de::DeTable::parse(&text)
            .map_err(|e| Exit::usage(format!("{}: {}", path.display(), e.message())))?
            .into_inner();
        let mut values = BTreeMap::new();
        for (key, value) in table.into_inner() {
            let line = document
                .get_key_value(key.as_str())
                .map_or(1, |(k, _)| line_of(&text, k.span().start));
            if !known.contains(&key.as_str()) {
                return Err(Exit::usage(format!(
                    "{}:{line}: unknown key `{key}`; the keys are {}",
                    path.display(),
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            values.insert(key, (value, line));
        }
        Ok(FileValues {
            path: Some(path.to_path_buf()),
            values,
        })
    }

    /// The file given (`--config` or its environment variable), else `default` when it exists.
    pub fn load(given: Option<&Path>, default: &Path, known: &[&str]) -> Result<FileValues, Exit> {
        match given {
            Some(path) => FileValues::read(path, known),
            None if default.exists() => FileValues::read(default, known),
            None => Ok(FileValues::default()),
        }
    }

    /// The setting `key` from the file, parsed by `parse` from its text (a string, or the
    /// TOML form of a number or boolean), or the refusal naming the file, line and key.
    pub fn get<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Setting<T>>, Exit> {
        let Some((value, line)) = self.values.get(key) else {
            return Ok(None);
        };
        let path = self.path.clone().unwrap_or_default();
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_) => {
                value.to_string()
            }
            other => {
                return Err(Exit::usage(format!(
                    "{}:{line}: key `{key}`: expected a string, a number or true/false, not {}",
                    path.display(),
                    other.type_str()
                )));
            }
        };
        let parsed = parse(&text)
            .map_err(|e| Exit::usage(format!("{}:{line}: key `{key}`: {e}", path.display())))?;
        Ok(Some(Setting {
            value: parsed,
            source: Source::File { path, line: *line },
        }))
    }
}

/// A path setting's value: any text but the empty one.
pub fn path(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("a path may not be empty".to_string());
    }
    Ok(PathBuf::from(raw))
}

/// A value clap parsed for the argument `id`, with where it came from: its environment
/// variable `var`, or the command line. `matches` are the subcommand's (absent in tests that
/// build the arguments by hand: the command line).
#[cfg(feature = "cli")]
pub fn given<T: Clone>(
    value: &Option<T>,
    matches: Option<&clap::ArgMatches>,
    id: &str,
    var: &'static str,
) -> Option<(T, Source)> {
    let value = value.clone()?;
    let source = match matches.and_then(|m| m.value_source(id)) {
        Some(clap::parser::ValueSource::EnvVariable) => Source::Environment(var),
        _ => Source::CommandLine,
    };
    Some((value, source))
}

/// The setting of one key: `given` (with the source clap says, command line or environment),
/// else the file's, else `default`.
pub fn layer<T>(
    given: Option<(T, Source)>,
    file: &FileValues,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    default: impl FnOnce() -> T,
) -> Result<Setting<T>, Exit> {
    if let Some((value, source)) = given {
        return Ok(Setting { value, source });
    }
    Ok(file.get(key, parse)?.unwrap_or_else(|| Setting {
        value: default(),
        source: Source::Default,
    }))
}

/// The setting of one key that has no default: `given`, else the file's, else `None`.
pub fn layer_optional<T>(
    given: Option<(T, Source)>,
    file: &FileValues,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Setting<T>>, Exit> {
    if let Some((value, source)) = given {
        return Ok(Some(Setting { value, source }));
    }
    file.get(key, parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_without_default_is_none_unless_given_or_in_the_file() {
        let (_d, path) = file("cap_dir = \"/mnt/cap\"\n");
        let f = FileValues::read(&path, &["cap_dir"]).unwrap();
        let parse = |t: &str| Ok::<_, String>(t.to_string());
        assert_eq!(
            layer_optional(None, &f, "cap_dir", parse).unwrap(),
            Some(Setting {
                value: "/mnt/cap".to_string(),
                source: Source::File { path, line: 1 }
            })
        );
        assert_eq!(
            layer_optional(
                Some(("/x".to_string(), Source::CommandLine)),
                &f,
                "cap_dir",
                parse
            )
            .unwrap()
            .map(|s| (s.value, s.source)),
            Some(("/x".to_string(), Source::CommandLine))
        );
        assert_eq!(
            layer_optional(None, &FileValues::default(), "cap_dir", parse).unwrap(),
            None
        );
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_value_knows_its_line_and_loses_to_the_command_line() {
        let (_d, path) =
            file("# comment\ndata_dir = \"/srv/a\"\n\ninterval = \"2h\"\nflag = true\n");
        let f = FileValues::read(&path, &["data_dir", "interval", "flag"]).unwrap();
        let s = layer(
            None,
            &f,
            "interval",
            |t| Ok(t.to_string()),
            || "1h".to_string(),
        )
        .unwrap();
        assert_eq!(
            s,
            Setting {
                value: "2h".to_string(),
                source: Source::File {
                    path: path.clone(),
                    line: 4
                }
            }
        );
        assert_eq!(s.source.to_string(), format!("{}:4", path.display()));
        let s = layer(
            Some(("3h".to_string(), Source::CommandLine)),
            &f,
            "interval",
            |t| Ok(t.to_string()),
            || "1h".into(),
        )
        .unwrap();
        assert_eq!(s.source, Source::CommandLine);
        let s = layer(
            None,
            &f,
            "flag",
            |t| t.parse::<bool>().map_err(|e| e.to_string()),
            || false,
        )
        .unwrap();
        assert!(s.value);
        let s = layer(
            None,
            &FileValues::default(),
            "interval",
            |t| Ok(t.to_string()),
            || "1h".into(),
        )
        .unwrap();
        assert_eq!((s.value.as_str(), s.source), ("1h", Source::Default));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_line_and_key() {
        let (_d, path) = file("data_dir = \"/srv/a\"\n\nintervall = \"2h\"\n");
        let e = FileValues::read(&path, &["data_dir", "interval"]).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "{}:3: unknown key `intervall`; the keys are `data_dir`, `interval`",
                path.display()
            )
        );

        let (_d, path) = file("interval = \"soon\"\n");
        let f = FileValues::read(&path, &["interval"]).unwrap();
        let e = f
            .get("interval", |t| {
                Err::<(), _>(format!("{t:?} is not a duration"))
            })
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "{}:1: key `interval`: \"soon\" is not a duration",
                path.display()
            )
        );

        let (_d, path) = file("interval = [1, 2]\n");
        let f = FileValues::read(&path, &["interval"]).unwrap();
        assert!(
            f.get("interval", |t| Ok(t.to_string()))
                .unwrap_err()
                .message
                .contains(":1: key `interval`: expected a string")
        );

        let (_d, path) = file("a = \n");
        let e = FileValues::read(&path, &["a"]).unwrap_err();
        assert!(
            e.message.starts_with(&format!("{}:1: ", path.display())),
            "{}",
            e.message
        );

        let e = FileValues::load(
            Some(Path::new("/nonexistent/agent.toml")),
            Path::new("/x"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("cannot read the configuration file /nonexistent/agent.toml"),
            "{}",
            e.message
        );
        assert!(
            FileValues::load(None, Path::new("/nonexistent/agent.toml"), &[])
                .unwrap()
                .path
                .is_none()
        );
    }
}
