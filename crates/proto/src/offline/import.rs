//! The import file of `invagent inventory hw|sw --out FILE`, read by `invsite import FILE`: one
//! class of inventory taken on a machine that was never enrolled (the injector of GLPI and OCS).
//!
//! It is plain JSON, so an administrator can read what is about to be imported. It carries no
//! credential: the site trusts it because an administrator runs `invsite import` with it, and
//! checks it as it checks any full report (names, hash, limits).

use serde::{Deserialize, Serialize};

use super::FileError;
use crate::inventory::{Class, Digest, Items};
use crate::name::ClientName;
use crate::time::Timestamp;

/// The layout this program writes and reads.
pub const IMPORT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFile {
    /// Always [`IMPORT_FORMAT`].
    pub format: u32,
    /// The client name the machine would enroll under (from its host name, or `--name`).
    pub name: ClientName,
    /// The machine's id: an agent enrolling later with the same one takes the record over.
    pub machine_id: String,
    pub collected_at: Timestamp,
    pub class: Class,
    pub hash: Digest,
    pub items: Items,
    /// What the collectors could not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ImportFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("an ImportFile serializes");
        out.push(b'\n');
        out
    }

    /// Reads an import file. The caller bounds its size first (the site uses the limits of
    /// a full report) and checks the hash against the items (the store does, as for a report).
    pub fn decode(bytes: &[u8]) -> Result<ImportFile, FileError> {
        #[derive(Deserialize)]
        struct Probe {
            format: Option<u64>,
        }
        let malformed = |reason: String| FileError::Malformed {
            what: "import",
            reason,
        };
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
        if probe.format != Some(u64::from(IMPORT_FORMAT)) {
            return Err(FileError::UnknownFormat {
                what: "import",
                found: probe.format.unwrap_or(0),
                expected: IMPORT_FORMAT,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_and_refuses_other_formats() {
        let mut items = Items::new();
        items.insert(
            "os".into(),
            [("name".to_string(), "Debian".to_string())].into(),
        );
        let file = ImportFile {
            format: IMPORT_FORMAT,
            name: ClientName::parse("KIOSK1").unwrap(),
            machine_id: "m".into(),
            collected_at: Timestamp(5),
            class: Class::Hw,
            hash: crate::inventory::Snapshot::new(items.clone()).hash(),
            items,
            warnings: vec![],
        };
        assert_eq!(ImportFile::decode(&file.encode()), Ok(file.clone()));
        let text = String::from_utf8(file.encode()).unwrap();
        let future = text.replace("\"format\":1", "\"format\":2");
        assert!(matches!(
            ImportFile::decode(future.as_bytes()),
            Err(FileError::UnknownFormat { found: 2, .. })
        ));
        let bad_name = text.replace("KIOSK1", "../etc");
        assert!(matches!(
            ImportFile::decode(bad_name.as_bytes()),
            Err(FileError::Malformed { .. })
        ));
    }
}
