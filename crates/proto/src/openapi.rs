//! OpenAPI schemas of the types with hand-written serde forms (feature `openapi`): each is a
//! string on the wire, so its schema says so, with the rule it must follow where a pattern can
//! state it. The derived schemas of the wire types refer to these by name; the site's document
//! registers them (`invsite`'s `api::openapi`).

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::inventory::Digest;
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;

fn string(description: &str, pattern: Option<&str>, format: Option<&str>) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description));
    if let Some(p) = pattern {
        b = b.pattern(Some(p));
    }
    if let Some(f) = format {
        b = b.format(Some(utoipa::openapi::SchemaFormat::Custom(f.to_string())));
    }
    RefOr::T(Schema::Object(b.build()))
}

impl PartialSchema for ClientName {
    fn schema() -> RefOr<Schema> {
        string(
            "A client name (SPEC section 3): 1 to 15 letters, digits, '-' or '_', starting with a letter or digit; upper-cased by the site.",
            Some("^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$"),
            None,
        )
    }
}
impl ToSchema for ClientName {}

impl PartialSchema for SiteCode {
    fn schema() -> RefOr<Schema> {
        string(
            "A site code: three letters or digits; upper-cased by the site.",
            Some("^[A-Za-z0-9]{3}$"),
            None,
        )
    }
}
impl ToSchema for SiteCode {}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        string(
            "A time in RFC 3339, UTC, with milliseconds.",
            None,
            Some("date-time"),
        )
    }
}
impl ToSchema for Timestamp {}

impl PartialSchema for Digest {
    fn schema() -> RefOr<Schema> {
        string(
            "A BLAKE3 digest in 64 lower-case hex digits.",
            Some("^[0-9a-f]{64}$"),
            None,
        )
    }
}
impl ToSchema for Digest {}
