//! What the site does when an enrollment took an existing client's record over (a renamed or
//! reimaged machine, `invsite config --merge-duplicates`): the store made the change and says
//! so in [`Enrolled::merged`]; this is the one place every enrollment path reports it, so that
//! what else a merge must leave behind (the log line now, an audit record later) is written
//! once.

use invsync_proto::ClientName;
use invsync_store::Enrolled;

/// Reports an enrollment of `name` through `path` (`http`) if it took a record over.
pub fn enrolled(name: &ClientName, enrolled: &Enrolled, path: &str) {
    let Some(m) = &enrolled.merged else {
        return;
    };
    // The audit trail (issue 20, item 7) records the merge here: who enrolled (the agent, by
    // the enrollment secret), the client, the old and new name and how it was matched.
    tracing::info!(
        client = %name,
        id = %enrolled.client_id,
        old_name = %m.old_name,
        old_machine_id = %m.old_machine_id,
        matched_by = m.matched_by.as_str(),
        path,
        "An enrollment took over the record of the same machine."
    );
}
