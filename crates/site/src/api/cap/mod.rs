//! The CAP API: what agents call. Enrollment needs the site's enrollment secret; everything
//! else needs the client's own token (the [`Client`](super::auth::Client) extractor), so a
//! client can only read its own instructions and write its own inventory.

pub mod ack;
pub mod checkin;
pub mod enroll;
pub mod report;
pub mod wait;
