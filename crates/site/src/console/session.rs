//! Console sessions: after a login with the admin token or a user's token, a random 256-bit
//! session id (holding who logged in: the [`Principal`], with its role) in an
//! `HttpOnly; SameSite=Strict; Path=/console` cookie (`Secure` when the site serves TLS), held
//! in memory only. A restart therefore logs everybody out, which costs a login and spares the
//! database a table of bearer secrets. The table is bounded: beyond [`MAX_SESSIONS`] the least
//! recently used session goes, and a session idle for [`IDLE`] is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

use crate::audit::Principal;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "invsite_session";
/// The pre-session cookie of the login form (double submit against login CSRF).
pub const LOGIN_COOKIE: &str = "invsite_login_csrf";
/// How long a session lives without being used.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// How many sessions the site holds at most; an administrator logs in a few times a day, so
/// this only bounds what a script logging in in a loop can cost.
pub const MAX_SESSIONS: usize = 1024;

/// A message for the next page shown in this session (post/redirect/get).
#[derive(Debug, Clone)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

struct Entry {
    csrf: String,
    principal: Principal,
    last_used: Instant,
    flash: Option<Flash>,
}

/// Every live session of one running site.
pub struct Sessions {
    /// Whether cookies get `Secure`: only when the site serves TLS, else a browser would never
    /// send them back over plain HTTP on loopback.
    secure: bool,
    map: Mutex<HashMap<String, Entry>>,
}

/// A request that came with a live session's cookie (the extractor is in `console/mod.rs`,
/// which can name the site's state).
pub struct Session {
    pub id: String,
    /// The per-session CSRF token every form carries.
    pub csrf: String,
    /// Who logged in, with the role every page and action is checked against.
    pub principal: Principal,
}

impl Sessions {
    pub fn new(secure: bool) -> Sessions {
        Sessions {
            secure,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are plain values; a panic elsewhere cannot leave one half-written.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `principal`; returns its id.
    pub fn create(&self, principal: Principal) -> String {
        let id = crate::secret::random_hex();
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, e| now.duration_since(e.last_used) < IDLE);
        let full = map.len() >= MAX_SESSIONS;
        let oldest = full
            .then(|| {
                map.iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
            })
            .flatten();
        if let Some(k) = oldest {
            map.remove(&k);
        }
        map.insert(
            id.clone(),
            Entry {
                csrf: crate::secret::random_hex(),
                principal,
                last_used: now,
                flash: None,
            },
        );
        id
    }

    /// The live session with this id, marked used now.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map();
        let entry = map.get_mut(id)?;
        if now.duration_since(entry.last_used) >= IDLE {
            map.remove(id);
            return None;
        }
        entry.last_used = now;
        Some(Session {
            id: id.to_string(),
            csrf: entry.csrf.clone(),
            principal: entry.principal.clone(),
        })
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(e) = self.map().get_mut(id) {
            e.flash = Some(flash);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.map().get_mut(id).and_then(|e| e.flash.take())
    }

    /// A `Set-Cookie` value for `name=value` with the console's attributes; `max_age` 0
    /// deletes it, `None` makes it last as long as the browser session.
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/console");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_removable() {
        let s = Sessions::new(false);
        let first = s.create(Principal::site_token(None));
        assert!(s.touch(&first).is_some());
        for _ in 0..MAX_SESSIONS {
            s.create(Principal::site_token(None));
        }
        assert!(
            s.touch(&first).is_none(),
            "the least recently used session went"
        );
        let id = s.create(Principal::site_token(None));
        s.remove(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn cookies_carry_the_attributes() {
        assert_eq!(
            Sessions::new(true).cookie("a", "b", None),
            "a=b; HttpOnly; SameSite=Strict; Path=/console; Secure"
        );
        assert!(
            !Sessions::new(false)
                .cookie("a", "b", Some(0))
                .contains("Secure")
        );
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "x=1; invsite_session=abc".parse().unwrap());
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("abc"));
    }
}
