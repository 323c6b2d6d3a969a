//! The agent's side of the file-share CAP (issue 18): where the site cannot be reached over
//! the network, the agent reads its instructions from `Clidata.box/<CLIENT>.cfg` and drops its
//! reports in `Inventry.box/` of a directory both can reach (a share, a sync folder, removable
//! media). The file formats are `invsync_proto::offline`'s; this module decides what they mean
//! for the agent.
//!
//! [`files`] reads and writes the directory and trusts nothing in it, [`cycle`] is the cycle
//! through it, [`summary`] what that cycle did, [`enroll`] the enrollment from an
//! `invsite offline-enroll` file, and [`import`] the import file `invagent inventory --out`
//! writes on a machine that was never enrolled.

pub mod cycle;
pub mod enroll;
pub mod files;
pub mod import;
pub mod summary;
