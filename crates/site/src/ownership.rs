//! Which site owns a client, for the tools that act on a client by name. A client belongs to
//! the site it enrolled at; a parent holds the clients of every site below it too, keyed by id,
//! so one name may exist at several sites. Requests (`invsync`, `setevnt`) act only on this
//! site's own clients and explain where another site's client lives (exit 5), unless
//! `invsync --via-child` routes the request down to an owner that accepts requests from its
//! parent; `show` and `history` read any client this site holds and ask for `--site` when a
//! name is ambiguous.

use invsync_proto::wire::{ClientView, HistoryEntry, HistoryQuery, Owner, Queued};
use invsync_proto::{Class, ClientName, SiteCode, Timestamp};
use invsync_store::{Store, StoreError};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error(
        "unknown client {name} at site {site}; `invsite clients` lists the clients this site holds"
    )]
    Unknown { name: ClientName, site: SiteCode },
    #[error("{message}")]
    Elsewhere { owners: Vec<Owner>, message: String },
    #[error("{message}")]
    Ambiguous { owners: Vec<Owner>, message: String },
    /// `invsync --via-child` for a client whose owner does not take requests from its parent.
    #[error("{message}")]
    NotAccepting { owner: Owner, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn place(o: &Owner) -> String {
    match &o.url {
        Some(url) => format!("site {} ({url})", o.site),
        None => format!("site {}", o.site),
    }
}

/// Explains that `name` is not one of this site's own clients: exit 5 naming the owning
/// site(s) and the command to run there, or exit 4 when no site below holds it either.
/// `command` is the tool's command line as it should be run at the owner, e.g.
/// `invsync hw SMSNTCLI8`.
pub async fn not_own(
    store: &Store,
    own: &SiteCode,
    name: &ClientName,
    command: &str,
) -> OwnershipError {
    let owners = match store.find_clients(name).await {
        Ok(list) => list
            .into_iter()
            .filter(|o| &o.site != own)
            .collect::<Vec<_>>(),
        Err(e) => return e.into(),
    };
    if owners.is_empty() {
        return OwnershipError::Unknown {
            name: name.clone(),
            site: own.clone(),
        };
    }
    let places: Vec<String> = owners.iter().map(place).collect();
    let message = format!(
        "{name} belongs to {}, not to this site {own}; run it on the owning site's server: `{command}`",
        places.join(" and ")
    );
    OwnershipError::Elsewhere { owners, message }
}

/// The id of one client this site holds (its own, or one of a site below) by name, narrowed
/// by `site` when given. An own client of that name is what an administrator of this site
/// means unless they name another site.
pub async fn resolve(
    store: &Store,
    own: &SiteCode,
    name: &ClientName,
    site: Option<&SiteCode>,
) -> Result<Uuid, OwnershipError> {
    let matches: Vec<Owner> = store
        .find_clients(name)
        .await?
        .into_iter()
        .filter(|o| site.is_none_or(|s| &o.site == s))
        .collect();
    if let (None, Some(mine)) = (site, matches.iter().find(|o| &o.site == own)) {
        return Ok(mine.id);
    }
    match matches.as_slice() {
        [] => Err(OwnershipError::Unknown {
            name: name.clone(),
            site: site.unwrap_or(own).clone(),
        }),
        [one] => Ok(one.id),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|o| format!("{} (id {})", place(o), o.id))
                .collect();
            Err(OwnershipError::Ambiguous {
                owners: many.to_vec(),
                message: format!(
                    "{name} is held by {}; choose one with --site CODE",
                    list.join(", ")
                ),
            })
        }
    }
}

/// One client's record, resolved as [`resolve`] does.
pub async fn view(
    store: &Store,
    own: &SiteCode,
    name: &ClientName,
    site: Option<&SiteCode>,
) -> Result<ClientView, OwnershipError> {
    let id = resolve(store, own, name, site).await?;
    store
        .client_view_by_id(id)
        .await?
        .ok_or_else(|| OwnershipError::Unknown {
            name: name.clone(),
            site: site.unwrap_or(own).clone(),
        })
}

/// One client's history, resolved as [`resolve`] does.
pub async fn history(
    store: &Store,
    own: &SiteCode,
    name: &ClientName,
    site: Option<&SiteCode>,
    query: &HistoryQuery,
) -> Result<Vec<HistoryEntry>, OwnershipError> {
    let id = resolve(store, own, name, site).await?;
    store
        .history_by_id(id, query)
        .await?
        .ok_or_else(|| OwnershipError::Unknown {
            name: name.clone(),
            site: site.unwrap_or(own).clone(),
        })
}

/// `invsync --via-child`: a resync request for `name`, queued here for this site's own client
/// (unless `site` names another site), else routed down to the owning site below, which must
/// have reported that it accepts requests from its parent. `site` picks the owner when several
/// sites below hold the name. Refusals: unknown (exit 4), ambiguous (exit 2), an owner that does
/// not accept them (exit 5, saying how to enable it or where to run `invsync` instead).
pub async fn route_resync(
    store: &Store,
    own: &SiteCode,
    name: &ClientName,
    class: Class,
    site: Option<&SiteCode>,
    now: Timestamp,
) -> Result<Queued, OwnershipError> {
    if site.is_none_or(|s| s == own) {
        match store.request_resync(name, class, now).await {
            Ok(queued) => return Ok(queued),
            Err(StoreError::UnknownClient { .. }) if site.is_none() => {}
            Err(StoreError::UnknownClient { .. }) => {
                return Err(OwnershipError::Unknown {
                    name: name.clone(),
                    site: own.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let owners: Vec<Owner> = store
        .find_clients(name)
        .await?
        .into_iter()
        .filter(|o| &o.site != own && site.is_none_or(|s| &o.site == s))
        .collect();
    let owner = match owners.as_slice() {
        [] => {
            return Err(OwnershipError::Unknown {
                name: name.clone(),
                site: site.unwrap_or(own).clone(),
            });
        }
        [one] => one.clone(),
        many => {
            let list: Vec<String> = many.iter().map(place).collect();
            return Err(OwnershipError::Ambiguous {
                owners: many.to_vec(),
                message: format!(
                    "{name} is held by {}; choose the owning site with --site CODE",
                    list.join(" and ")
                ),
            });
        }
    };
    // What the owner last reported of itself through the tree; a site that never reported
    // cannot have said it accepts.
    let accepts = store
        .sites()
        .await?
        .into_iter()
        .any(|s| s.code == owner.site && s.accepts_parent_requests);
    if !accepts {
        let message = format!(
            "{name} belongs to {}, which does not accept requests from its parent sites; \
             enable it there with `invsite config --accept-parent-requests true` and restart its server \
             (or create such a site with `invsite init … --accept-parent-requests`), \
             or run it on the owning site's server: `invsync {class} {name}`",
            place(&owner)
        );
        return Err(OwnershipError::NotAccepting { owner, message });
    }
    Ok(store.queue_routed_request(owner.id, class, now).await?)
}
