//! The site-to-site API (`/site/v1/…`): what a child site calls at its parent with its child
//! token (the [`Child`](super::auth::Child) extractor).

pub mod forward;
pub mod hello;

use invsync_proto::wire::SiteStatus;

use super::auth::Child;
use super::error::ApiError;

/// A child speaks for its own code only: a status claiming another code is refused.
pub fn check_sender(child: &Child, status: &SiteStatus) -> Result<(), ApiError> {
    if status.code != child.code {
        return Err(ApiError::Unauthorized(format!(
            "this token was issued for site {}, not {}",
            child.code, status.code
        )));
    }
    Ok(())
}
