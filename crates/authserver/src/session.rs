//! Browser sessions and in-flight authorization requests, kept in memory with a hard
//! cap (the embedded server is single-node by design; a restart signs users out).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::LaunchContext;
use crate::util::{random_token, sha256};

/// Upper bound on sessions and on pending authorization requests each.
const MAX_ENTRIES: usize = 10_000;
pub const SESSION_TTL: u64 = 12 * 3600;
/// How long a user has to finish login, patient choice and consent.
pub const PENDING_TTL: u64 = 15 * 60;
pub const COOKIE_NAME: &str = "fhirgate_auth";

#[derive(Debug, Clone)]
pub struct Session {
    /// Anti-CSRF token embedded in every form of this session.
    pub csrf: String,
    pub user_id: Option<String>,
    pub expires_at: u64,
}

/// A validated authorization request waiting for login, patient choice and consent.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The session cookie hash it belongs to: another browser cannot continue it.
    pub session_key: Vec<u8>,
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub state: String,
    pub scopes: Vec<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub launch: Option<LaunchContext>,
    pub patient: Option<String>,
    pub expires_at: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    // Keyed by the SHA-256 of the cookie value, so a memory dump shows no live cookie.
    sessions: Mutex<HashMap<Vec<u8>, Session>>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn make_room<V>(
    map: &mut HashMap<impl Clone + Eq + std::hash::Hash, V>,
    now: u64,
    exp: fn(&V) -> u64,
) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| exp(v) > now);
    while map.len() >= MAX_ENTRIES {
        let oldest = map
            .iter()
            .min_by_key(|(_, v)| exp(v))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            None => break,
        }
    }
}

impl Sessions {
    /// The live session for a cookie value, if any.
    pub fn get(&self, cookie: &str, now: u64) -> Option<Session> {
        let map = self.sessions.lock().ok()?;
        map.get(&sha256(cookie.as_bytes()))
            .filter(|s| s.expires_at > now)
            .cloned()
    }

    /// Starts a session; returns the cookie value.
    pub fn create(&self, now: u64) -> Option<(String, Session)> {
        let cookie = random_token();
        let session = Session {
            csrf: random_token(),
            user_id: None,
            expires_at: now + SESSION_TTL,
        };
        let mut map = self.sessions.lock().ok()?;
        make_room(&mut map, now, |s: &Session| s.expires_at);
        map.insert(sha256(cookie.as_bytes()), session.clone());
        Some((cookie, session))
    }

    /// Signs a user into the session. The CSRF token is renewed on login so a token
    /// seen before authentication is worthless after it.
    pub fn login(&self, cookie: &str, user_id: &str) -> Option<Session> {
        let mut map = self.sessions.lock().ok()?;
        let s = map.get_mut(&sha256(cookie.as_bytes()))?;
        s.user_id = Some(user_id.to_string());
        s.csrf = random_token();
        Some(s.clone())
    }

    pub fn remove(&self, cookie: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&sha256(cookie.as_bytes()));
        }
    }

    pub fn put_pending(&self, p: Pending, now: u64) -> Option<String> {
        let id = random_token();
        let mut map = self.pending.lock().ok()?;
        make_room(&mut map, now, |p: &Pending| p.expires_at);
        map.insert(id.clone(), p);
        Some(id)
    }

    pub fn pending(&self, id: &str, now: u64) -> Option<Pending> {
        let map = self.pending.lock().ok()?;
        map.get(id).filter(|p| p.expires_at > now).cloned()
    }

    pub fn update_pending(&self, id: &str, f: impl FnOnce(&mut Pending)) {
        if let Ok(mut map) = self.pending.lock()
            && let Some(p) = map.get_mut(id)
        {
            f(p);
        }
    }

    pub fn take_pending(&self, id: &str) -> Option<Pending> {
        self.pending.lock().ok()?.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_login_rotates_csrf() {
        let s = Sessions::default();
        let (cookie, sess) = s.create(100).unwrap();
        assert!(s.get(&cookie, 101).is_some());
        assert!(s.get(&cookie, 100 + SESSION_TTL).is_none());
        assert!(s.get("other", 101).is_none());
        let after = s.login(&cookie, "u1").unwrap();
        assert_ne!(after.csrf, sess.csrf);
        assert_eq!(after.user_id.as_deref(), Some("u1"));
    }
}
