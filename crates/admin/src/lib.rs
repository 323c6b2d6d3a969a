//! The admin tools that run on a site server: `invsync` (queue a hardware or software
//! resynchronization for a client, the tool of the seed) and `setevnt` (wake a client). Both
//! read the site's data directory for the admin token, which is why they run only on a site
//! server, and talk to the running site through its admin API; when the site is not running
//! they queue the request in its database, where the site finds it when it starts.

pub mod all;
pub mod cancel;
pub mod invsync;
pub mod setevnt;
