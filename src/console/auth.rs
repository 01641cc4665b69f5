//! Who is using the console, and proof that a form was posted by the page the console rendered.
//!
//! # Identity
//! * [`AuthMode::Header`]: an authenticating proxy (an ALB with OIDC, oauth2-proxy, ...) sets a
//!   header naming the user on every request, and the console trusts it. The proxy must strip
//!   that header from client requests and be the only way to reach the console; anyone who can
//!   send requests to the console directly can claim any name.
//! * [`AuthMode::Token`]: a shared secret. `GET /login` shows a form; `POST /login` with the
//!   token (never in a URL) starts a session for the console's configured user, carried by an
//!   `HttpOnly; SameSite=Strict` cookie signed with the server key. Rotating the token (which the
//!   key derives from, unless a session key is configured) ends every session.
//!
//! # Sessions and CSRF
//! Every browser gets a session cookie (`sqlctl_session`): `id.expiry.user.mac`, the mac an
//! HMAC-SHA256 over the other fields with the server key, so the console keeps no session
//! table. Each form carries `csrf = HMAC(key, "csrf" ‖ session id ‖ user)`; a POST is accepted
//! only with that token, with the session cookie, and with an `Origin` (or, without one, a
//! `Referer`) naming the host the request was sent to. `SameSite=Strict` keeps the cookie off
//! cross-site requests in the first place.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sqlctl_session";
/// How long a session lasts (absolute, not sliding).
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// Shortest token accepted: a guessable token would make the login form a guessing oracle.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest user name accepted from a header (longer values are refused, not truncated).
const MAX_USER_CHARS: usize = 256;

/// How the console learns who the user is.
#[derive(Clone)]
pub enum AuthMode {
    /// Trust this request header (set by an authenticating proxy that strips it from clients).
    Header(HeaderName),
    /// A login form with a shared secret; whoever logs in decides as `user`.
    Token { token: String, user: String },
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMode::Header(h) => write!(f, "Header({h})"),
            AuthMode::Token { user, .. } => write!(f, "Token {{ token: <redacted>, user: {user:?} }}"),
        }
    }
}

/// The key sessions and CSRF tokens are signed with.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

impl ServerKey {
    /// From a configured secret (shared by replicas behind one load balancer).
    pub fn derive(secret: &str) -> ServerKey {
        ServerKey(hmac_sha256(b"sqlctl console session key v1", secret.as_bytes()))
    }

    /// A fresh random key: sessions end when the process does.
    pub fn random() -> ServerKey {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        ServerKey(hmac_sha256(&k, b"sqlctl console random key"))
    }

    fn mac(&self, parts: &[&str]) -> [u8; 32] {
        hmac_sha256(&self.0, parts.join("\u{0}").as_bytes())
    }
}

/// A browser session as carried by the cookie. `user` is set only by a token login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub expires: i64,
    pub user: Option<String>,
}

impl Session {
    /// A new session (a fresh id: a login never keeps the id it arrived with).
    pub fn new(user: Option<String>) -> Session {
        Session { id: uuid::Uuid::new_v4().simple().to_string(), expires: now_secs() + SESSION_SECONDS, user }
    }

    /// The cookie value: `id.expires.hex(user).hex(mac)`.
    pub fn encode(&self, key: &ServerKey) -> String {
        let user = hex::encode(self.user.as_deref().unwrap_or(""));
        let expires = self.expires.to_string();
        let mac = key.mac(&["session", &self.id, &expires, &user]);
        format!("{}.{expires}.{user}.{}", self.id, hex::encode(mac))
    }

    /// Parses and verifies a cookie value; `None` when forged, malformed or expired.
    pub fn decode(value: &str, key: &ServerKey) -> Option<Session> {
        let mut it = value.split('.');
        let (id, expires, user, mac) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || id.is_empty() {
            return None;
        }
        let want = key.mac(&["session", id, expires, user]);
        if !ct_eq(&hex::decode(mac).ok()?, &want) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now_secs() {
            return None;
        }
        let user = String::from_utf8(hex::decode(user).ok()?).ok()?;
        Some(Session { id: id.to_string(), expires, user: (!user.is_empty()).then_some(user) })
    }

    /// The CSRF token for forms of this session used by `user`.
    pub fn csrf(&self, key: &ServerKey, user: &str) -> String {
        hex::encode(key.mac(&["csrf", &self.id, user]))
    }

    /// Checks a posted CSRF token in constant time.
    pub fn csrf_ok(&self, key: &ServerKey, user: &str, given: &str) -> bool {
        ct_eq(given.as_bytes(), self.csrf(key, user).as_bytes())
    }

    /// The `Set-Cookie` value for this session. `Secure` when the browser reached us over TLS
    /// (as a terminating proxy reports with `X-Forwarded-Proto`).
    pub fn set_cookie(&self, key: &ServerKey, secure: bool) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.encode(key),
            (self.expires - now_secs()).max(0),
            if secure { "; Secure" } else { "" }
        )
    }
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session cookie of a request, verified.
pub fn session_from(headers: &HeaderMap, key: &ServerKey) -> Option<Session> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .find_map(|(_, value)| Session::decode(value, key))
}

/// Whether the browser talks TLS to whatever terminates it.
pub fn is_secure(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The user named by the trusted header: trimmed, non-empty, printable, bounded.
pub fn header_user(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    let ok = !v.is_empty() && v.chars().count() <= MAX_USER_CHARS && !v.chars().any(char::is_control);
    ok.then(|| v.to_string())
}

/// Same-origin check for a state-changing request: `Origin` must name the `Host` the request
/// was sent to; without `Origin`, a `Referer` must; with neither (a non-browser client) the
/// CSRF token alone decides. Returns why the request is refused.
pub fn origin_refusal(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let check = |what: &str, value: &str| -> Option<String> {
        let authority =
            value.split_once("://").map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or("")).unwrap_or("");
        if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
            None
        } else {
            Some(format!(
                "the form was posted from another site ({what} {value:?} is not this console's host {host:?})"
            ))
        }
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return check("Origin", origin.to_str().unwrap_or("?"));
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return check("Referer", referer.to_str().unwrap_or("?"));
    }
    None
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
}

/// Constant-time equality (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Compares a presented token with the configured one without leaking where they differ:
/// both are hashed first, so neither length nor content shows in the timing.
pub fn token_matches(given: &str, expected: &str) -> bool {
    ct_eq(&Sha256::digest(given.as_bytes()), &Sha256::digest(expected.as_bytes()))
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_session_round_trips_and_any_tampering_is_refused() {
        let key = ServerKey::derive("a-long-enough-secret");
        let s = Session::new(Some("alice.smith".into()));
        let v = s.encode(&key);
        assert_eq!(Session::decode(&v, &key), Some(s.clone()));
        // Another key, a changed user, a changed expiry, a truncated mac: all refused.
        assert_eq!(Session::decode(&v, &ServerKey::derive("another-long-secret")), None);
        let parts: Vec<&str> = v.split('.').collect();
        let forged = format!("{}.{}.{}.{}", parts[0], parts[1], hex::encode("mallory"), parts[3]);
        assert_eq!(Session::decode(&forged, &key), None);
        let later = format!("{}.{}.{}.{}", parts[0], s.expires + 3600, parts[2], parts[3]);
        assert_eq!(Session::decode(&later, &key), None);
        assert_eq!(Session::decode(&v[..v.len() - 2], &key), None);
        assert_eq!(Session::decode("", &key), None);
        // Expired sessions are refused even with a valid mac.
        let old = Session { expires: now_secs() - 1, ..s };
        assert_eq!(Session::decode(&old.encode(&key), &key), None);
    }

    #[test]
    fn csrf_is_bound_to_session_and_user() {
        let key = ServerKey::random();
        let (a, b) = (Session::new(None), Session::new(None));
        let t = a.csrf(&key, "alice");
        assert!(a.csrf_ok(&key, "alice", &t));
        assert!(!a.csrf_ok(&key, "bob", &t));
        assert!(!b.csrf_ok(&key, "alice", &t));
        assert!(!a.csrf_ok(&key, "alice", ""));
    }

    #[test]
    fn origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(origin_refusal(&h), None, "no Origin and no Referer: the token decides");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert_eq!(origin_refusal(&h), None);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(origin_refusal(&h).unwrap().contains("evil.example"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(origin_refusal(&h).is_some());
        h.remove(header::ORIGIN);
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:8080/requests/default/q"));
        assert_eq!(origin_refusal(&h), None);
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:8080.evil.example/"));
        assert!(origin_refusal(&h).is_some());
    }

    #[test]
    fn cookies_are_found_among_others_and_flags_are_strict() {
        let key = ServerKey::random();
        let s = Session::new(None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}=junk; b=2")).unwrap());
        assert_eq!(session_from(&h, &key), None);
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}={}", s.encode(&key))).unwrap());
        assert_eq!(session_from(&h, &key), Some(s.clone()));
        let c = s.set_cookie(&key, false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"), "{c}");
        assert!(s.set_cookie(&key, true).ends_with("; Secure"));
    }

    #[test]
    fn header_users_are_trimmed_and_bounded() {
        let name = HeaderName::from_static("x-user");
        let mut h = HeaderMap::new();
        assert_eq!(header_user(&h, &name), None);
        h.insert(&name, HeaderValue::from_static("  alice@example.com "));
        assert_eq!(header_user(&h, &name).as_deref(), Some("alice@example.com"));
        h.insert(&name, HeaderValue::from_static("   "));
        assert_eq!(header_user(&h, &name), None);
        h.insert(&name, HeaderValue::from_str(&"x".repeat(300)).unwrap());
        assert_eq!(header_user(&h, &name), None);
        assert!(token_matches("same", "same") && !token_matches("same", "Same") && !token_matches("", "x"));
    }
}
