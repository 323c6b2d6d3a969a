//! The CAP API (`/cap/v1/…`), what agents talk to: enrol, check in for instructions, send
//! reports, wait for a wake-up, acknowledge events. Agents authenticate with `Authorization:
//! Bearer <client token>` where the token is `<client id>.<key hex>` (see [`ClientToken`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::inventory::{Class, Delta, Digest, Items};
use crate::name::{ClientName, SiteCode};
use std::collections::BTreeMap;

pub const CAP_ENROLL: &str = "/cap/v1/enroll";
pub const CAP_CHECKIN: &str = "/cap/v1/checkin";
pub const CAP_REPORT: &str = "/cap/v1/report";
pub const CAP_ACK: &str = "/cap/v1/ack";
pub const CAP_WAIT: &str = "/cap/v1/wait";

/// A client's credential as the agent presents it: `<client id>.<64 hex digits of key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub client_id: Uuid,
    pub key: [u8; 32],
}

impl ClientToken {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.client_id, hex::encode(self.key))
    }

    pub fn parse(raw: &str) -> Option<ClientToken> {
        let (id, key) = raw.split_once('.')?;
        let client_id = Uuid::parse_str(id).ok()?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(key, &mut k).ok()?;
        Some(ClientToken { client_id, key: k })
    }

    /// What the site stores instead of the key.
    pub fn key_hash(&self) -> Digest {
        Digest(*blake3::hash(&self.key).as_bytes())
    }
}

/// `POST /cap/v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub secret: String,
    pub name: ClientName,
    /// The content of `/etc/machine-id` under the agent's root; identifies the machine across
    /// re-installs of the agent.
    pub machine_id: String,
    /// The machine's DMI serial number and product UUID, when the agent could read both: a
    /// reimaged machine gets a new machine id but keeps these, so the site can recognise it
    /// (`invsite config --merge-duplicates`). Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareId>,
}

/// What identifies a machine's hardware across re-installs: its DMI serial number and product
/// UUID (`/sys/class/dmi/id/product_serial`, `product_uuid`), both present and non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareId {
    pub serial: String,
    pub uuid: String,
}

impl HardwareId {
    /// The longest serial or UUID the site accepts.
    pub const MAX_LEN: usize = 128;

    /// Values that identify no particular machine: firmware placeholders that many boards ship
    /// with, which would merge unrelated machines if taken for identities.
    const PLACEHOLDERS: &'static [&'static str] = &[
        "0",
        "none",
        "n/a",
        "na",
        "default string",
        "to be filled by o.e.m.",
        "system serial number",
        "not specified",
        "not applicable",
        "0123456789",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    ];

    /// Both values, trimmed, when both identify a machine: non-empty, not a known placeholder,
    /// at most [`HardwareId::MAX_LEN`] bytes, and printable ASCII. `None` otherwise.
    pub fn new(serial: &str, uuid: &str) -> Option<HardwareId> {
        let usable = |v: &str| {
            !v.is_empty()
                && v.len() <= Self::MAX_LEN
                && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                && !Self::PLACEHOLDERS.contains(&v.to_ascii_lowercase().as_str())
        };
        let (serial, uuid) = (serial.trim(), uuid.trim());
        (usable(serial) && usable(uuid)).then(|| HardwareId {
            serial: serial.to_string(),
            // UUIDs are compared case-insensitively: firmware and kernels differ in case.
            uuid: uuid.to_ascii_lowercase(),
        })
    }

    /// This id as the site keeps it, or `None` when it identifies no machine (see
    /// [`HardwareId::new`]): what a site does with an id an agent sent.
    pub fn checked(&self) -> Option<HardwareId> {
        HardwareId::new(&self.serial, &self.uuid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub client_id: Uuid,
    /// The client token ([`ClientToken::encode`]); shown once, stored hashed by the site.
    pub token: String,
    pub name: ClientName,
    pub site: SiteCode,
    /// True when this machine was already enrolled under this name and keeps its id.
    pub reenrolled: bool,
    /// The public half of the site's signing key, which the `.cfg` files of a file-share CAP
    /// are signed with (`invagent cycle --cap-dir`); absent from sites older than the
    /// file-share CAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_public_key: Option<crate::offline::sign::PublicKey>,
}

/// The site's view of one class of a client: the version and hash it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassState {
    pub version: i64,
    pub hash: Digest,
}

/// `POST /cap/v1/checkin`: the agent says it is alive and asks what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinResponse {
    /// Instructions not yet completed, oldest first. An instruction is delivered again until it
    /// completes, so a lost response loses nothing; the agent de-duplicates by id.
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    /// What the site holds per class; absent for a class it has no snapshot of. An agent whose
    /// own record differs (restored database, wiped agent) sends a full report.
    #[serde(default)]
    pub classes: BTreeMap<Class, ClassState>,
    /// The time between cycles the site asks its agents for (`invsite config
    /// --agent-interval`), in seconds; absent when the site leaves it to them. An agent whose
    /// interval was set on its machine keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_interval_secs: Option<u64>,
}

/// Something the site asks a client to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub id: i64,
    #[serde(flatten)]
    pub kind: InstructionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InstructionKind {
    /// Run this class's inventory and send a full report answering the instruction's id
    /// (the `.cfg` of the original tool).
    Resync { class: Class },
    /// A Set Client Event wake-up.
    Event { event: Event },
}

/// The events of `setevnt CLIENT EVENT`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Run a cycle now.
    Cycle,
    /// Run the hardware inventory now.
    Hinv,
    /// Run the software inventory now.
    Sinv,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Cycle => "cycle",
            Event::Hinv => "hinv",
            Event::Sinv => "sinv",
        }
    }

    pub fn parse(raw: &str) -> Option<Event> {
        match raw {
            "cycle" => Some(Event::Cycle),
            "hinv" => Some(Event::Hinv),
            "sinv" => Some(Event::Sinv),
            _ => None,
        }
    }
}

/// `POST /cap/v1/report`: one class's inventory, full or as a delta.
///
/// One flat JSON object: `report_id`, `class`, `hash`, `kind` (`full` or `delta`), then
/// `items` for a full report or `base_version` and `delta` for a delta, and `answers`.
/// Deserialization is written by hand (see [`report_de`]); serialization is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Unique per report: the same report sent twice is stored once.
    pub report_id: Uuid,
    pub class: Class,
    /// The hash the snapshot has after this report is applied.
    pub hash: Digest,
    #[serde(flatten)]
    pub body: ReportBody,
    /// Ids of resync instructions this (full) report answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReportBody {
    /// The whole snapshot.
    Full { items: Items },
    /// Changes against the version the site last acknowledged.
    Delta { base_version: i64, delta: Delta },
}

impl ReportBody {
    pub fn is_full(&self) -> bool {
        matches!(self, ReportBody::Full { .. })
    }
}

/// A report as received, with its items in whatever form the receiver deserializes them into
/// (`I`, for [`Report`] the maps of [`Items`]): the site reads items straight into the form it
/// hashes and stores, without building maps of strings first. The fields are [`Report`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOf<I> {
    pub report_id: Uuid,
    pub class: Class,
    pub hash: Digest,
    pub body: ReportBodyOf<I>,
    pub answers: Vec<i64>,
}

/// The body of a [`ReportOf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportBodyOf<I> {
    Full {
        items: I,
    },
    Delta {
        base_version: i64,
        upsert: I,
        remove: Vec<String>,
    },
}

impl<I> ReportBodyOf<I> {
    pub fn is_full(&self) -> bool {
        matches!(self, ReportBodyOf::Full { .. })
    }
}

mod report_de {
    //! A report's hand-written deserializer. The derived one (`#[serde(flatten)]` over an
    //! internally tagged enum) buffers the whole body into serde's generic `Content` tree and
    //! then deserializes that again: profiling the site under full reports of 1,500 packages
    //! put an eighth of its CPU time there. This reads the fields in one pass, in any order,
    //! and accepts exactly what the derived one accepted (unknown fields are ignored).

    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use uuid::Uuid;

    use super::{Report, ReportBody, ReportBodyOf, ReportOf};
    use crate::inventory::{Class, Delta, Digest, Items};

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "snake_case")]
    enum Field {
        ReportId,
        Class,
        Hash,
        Kind,
        Items,
        BaseVersion,
        Delta,
        Answers,
        #[serde(other)]
        Other,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Full,
        Delta,
    }

    fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
        if slot.is_some() {
            return Err(E::duplicate_field(name));
        }
        *slot = Some(value);
        Ok(())
    }

    struct ReportVisitor<I>(std::marker::PhantomData<I>);

    impl<'de, I: Deserialize<'de> + Default> Visitor<'de> for ReportVisitor<I> {
        type Value = ReportOf<I>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a report object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReportOf<I>, A::Error> {
            let mut report_id: Option<Uuid> = None;
            let mut class: Option<Class> = None;
            let mut hash: Option<Digest> = None;
            let mut kind: Option<Kind> = None;
            let mut items: Option<I> = None;
            let mut base_version: Option<i64> = None;
            let mut delta: Option<DeltaOf<I>> = None;
            let mut answers: Option<Vec<i64>> = None;
            while let Some(field) = map.next_key::<Field>()? {
                match field {
                    Field::ReportId => set(&mut report_id, map.next_value()?, "report_id")?,
                    Field::Class => set(&mut class, map.next_value()?, "class")?,
                    Field::Hash => set(&mut hash, map.next_value()?, "hash")?,
                    Field::Kind => set(&mut kind, map.next_value()?, "kind")?,
                    Field::Items => set(&mut items, map.next_value()?, "items")?,
                    Field::BaseVersion => {
                        set(&mut base_version, map.next_value()?, "base_version")?
                    }
                    Field::Delta => set(&mut delta, map.next_value()?, "delta")?,
                    Field::Answers => set(&mut answers, map.next_value()?, "answers")?,
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let body = match kind.ok_or_else(|| de::Error::missing_field("kind"))? {
                Kind::Full => ReportBodyOf::Full {
                    items: items.ok_or_else(|| de::Error::missing_field("items"))?,
                },
                Kind::Delta => {
                    let delta = delta.ok_or_else(|| de::Error::missing_field("delta"))?;
                    ReportBodyOf::Delta {
                        base_version: base_version
                            .ok_or_else(|| de::Error::missing_field("base_version"))?,
                        upsert: delta.upsert,
                        remove: delta.remove,
                    }
                }
            };
            Ok(ReportOf {
                report_id: report_id.ok_or_else(|| de::Error::missing_field("report_id"))?,
                class: class.ok_or_else(|| de::Error::missing_field("class"))?,
                hash: hash.ok_or_else(|| de::Error::missing_field("hash"))?,
                body,
                answers: answers.unwrap_or_default(),
            })
        }
    }

    /// The `delta` field of a delta report, with its upserted items as the receiver wants them.
    #[derive(Deserialize)]
    #[serde(bound(deserialize = "I: Deserialize<'de> + Default"))]
    struct DeltaOf<I> {
        #[serde(default)]
        upsert: I,
        #[serde(default)]
        remove: Vec<String>,
    }

    impl<'de, I: Deserialize<'de> + Default> Deserialize<'de> for ReportOf<I> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReportOf<I>, D::Error> {
            d.deserialize_map(ReportVisitor(std::marker::PhantomData))
        }
    }

    impl<'de> Deserialize<'de> for Report {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Report, D::Error> {
            let r = ReportOf::<Items>::deserialize(d)?;
            let body = match r.body {
                ReportBodyOf::Full { items } => ReportBody::Full { items },
                ReportBodyOf::Delta {
                    base_version,
                    upsert,
                    remove,
                } => ReportBody::Delta {
                    base_version,
                    delta: Delta { upsert, remove },
                },
            };
            Ok(Report {
                report_id: r.report_id,
                class: r.class,
                hash: r.hash,
                body,
                answers: r.answers,
            })
        }
    }
}

/// The site's answer to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReportAck {
    /// Stored; the snapshot now has this version and hash.
    Accepted { version: i64, hash: Digest },
    /// This report id was stored before; nothing changed.
    Duplicate { version: i64, hash: Digest },
    /// Stored nothing: send a full report.
    ResyncRequired { reason: String },
}

/// The answer to `POST /cap/v1/wait`, the push channel's long-poll: `wake` is true when an
/// instruction is waiting (cycle now), false when the hold time ran out or the site is
/// shutting down (ask again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitResponse {
    pub wake: bool,
}

/// `POST /cap/v1/ack`: events the agent has acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    pub done: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_ids_refuse_placeholders() {
        let id = HardwareId::new(" ABC123 ", "4C4C4544-0042").unwrap();
        assert_eq!(
            (id.serial.as_str(), id.uuid.as_str()),
            ("ABC123", "4c4c4544-0042")
        );
        assert_eq!(HardwareId::new("", "4c4c4544"), None);
        assert_eq!(HardwareId::new("ABC123", ""), None);
        assert_eq!(HardwareId::new("To Be Filled By O.E.M.", "4c4c4544"), None);
        assert_eq!(
            HardwareId::new("ABC123", "00000000-0000-0000-0000-000000000000"),
            None
        );
        assert_eq!(HardwareId::new("ABC\u{7}", "4c4c4544"), None);
        assert_eq!(HardwareId::new(&"A".repeat(129), "4c4c4544"), None);
    }

    #[test]
    fn instruction_json_shape() {
        let i = Instruction {
            id: 7,
            kind: InstructionKind::Resync { class: Class::Sw },
        };
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"id":7,"type":"resync","class":"sw"}"#
        );
        let e = Instruction {
            id: 8,
            kind: InstructionKind::Event { event: Event::Hinv },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"id":8,"type":"event","event":"hinv"}"#
        );
    }

    #[test]
    fn token_round_trip() {
        let t = ClientToken {
            client_id: Uuid::new_v4(),
            key: [7u8; 32],
        };
        assert_eq!(ClientToken::parse(&t.encode()), Some(t));
        assert_eq!(ClientToken::parse("nope"), None);
        assert_eq!(ClientToken::parse("x.y"), None);
    }

    #[test]
    fn report_json_shape() {
        let r = Report {
            report_id: Uuid::nil(),
            class: Class::Hw,
            hash: crate::Snapshot::default().hash(),
            body: ReportBody::Full {
                items: Items::new(),
            },
            answers: vec![3],
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["kind"], "full");
        assert_eq!(j["answers"][0], 3);
        let back: Report = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn report_fields_are_read_in_any_order_and_refusals_name_the_field() {
        let hash = crate::Snapshot::default().hash().to_string();
        let id = "00000000-0000-0000-0000-000000000001";
        // `kind` last, items first, an unknown field ignored (as the derived form did).
        let raw = format!(
            r#"{{"items":{{"dpkg/a":{{"version":"1"}}}},"extra":[1,{{"x":2}}],"class":"sw","hash":"{hash}","report_id":"{id}","kind":"full"}}"#
        );
        let r: Report = serde_json::from_str(&raw).unwrap();
        assert_eq!(r.class, Class::Sw);
        assert!(r.answers.is_empty());
        let ReportBody::Full { items } = &r.body else {
            panic!("{r:?}")
        };
        assert_eq!(items["dpkg/a"]["version"], "1");
        // A delta round-trips.
        let d = Report {
            report_id: Uuid::nil(),
            class: Class::Sw,
            hash: crate::Snapshot::default().hash(),
            body: ReportBody::Delta {
                base_version: 7,
                delta: Delta {
                    upsert: Items::new(),
                    remove: vec!["dpkg/b".to_string()],
                },
            },
            answers: vec![],
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        // What is refused, and the message says why.
        let refused = |raw: String, says: &str| {
            let err = serde_json::from_str::<Report>(&raw)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{raw}: {err}");
        };
        let head = format!(r#""report_id":"{id}","class":"sw","hash":"{hash}""#);
        refused(
            format!(r#"{{{head},"items":{{}}}}"#),
            "missing field `kind`",
        );
        refused(
            format!(r#"{{{head},"kind":"full"}}"#),
            "missing field `items`",
        );
        refused(
            format!(r#"{{{head},"kind":"delta","delta":{{}}}}"#),
            "missing field `base_version`",
        );
        refused(
            format!(r#"{{{head},"kind":"partial","items":{{}}}}"#),
            "unknown variant `partial`",
        );
        refused(
            format!(r#"{{{head},"kind":"full","kind":"full","items":{{}}}}"#),
            "duplicate field `kind`",
        );
        refused(
            format!(r#"{{"class":"sw","hash":"{hash}","kind":"full","items":{{}}}}"#),
            "missing field `report_id`",
        );
        refused(
            format!(r#"{{{head},"kind":"full","items":[]}}"#),
            "invalid type",
        );
        refused("[]".to_string(), "invalid type");
    }
}
