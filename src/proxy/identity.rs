//! Who an agent is. With `[[agent]]` entries configured, the name its
//! `Proxy-Authorization: Basic base64(name:token)` proves, the token checked
//! against every stored hash in constant time; a CONNECT proves it for
//! every request inside its connection. Without `[[agent]]` entries, the
//! client's IP address. A name an agent merely gives itself (`Airlock-Agent`,
//! or an unchecked proxy user name) is only a label for the reviewer.
//!
//! Retries, idempotency keys and the pending cap are keyed by the identity,
//! never by a label. This module never logs, stores or echoes a token.

use std::net::SocketAddr;

use base64::Engine;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;

use crate::config::{Agent, same_hash, token_hash};

/// An agent as airlock knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated `[[agent]]` name, or the client's IP address.
    pub name: String,
    /// A name nobody checked (the proxy user name when agents do not
    /// authenticate): shown to reviewers as unverified.
    pub label: Option<String>,
}

/// The agent behind a request to the proxy (a CONNECT, or a plain-HTTP
/// request in absolute form); `None` when `[[agent]]` entries exist and its
/// credentials are missing or wrong.
pub fn identify(agents: &[Agent], headers: &HeaderMap, peer: SocketAddr) -> Option<Identity> {
    let credentials = basic_credentials(headers);
    if agents.is_empty() {
        return Some(Identity {
            name: peer.ip().to_string(),
            label: credentials.map(|(user, _)| user).filter(|u| !u.is_empty()),
        });
    }
    let (user, token) = credentials?;
    let hash = token_hash(&token);
    // Every entry is compared, so timing tells nothing about which matched.
    let mut found = None;
    for agent in agents {
        let matches = same_hash(&hash, &agent.token_sha256) & (agent.name == user);
        if matches && found.is_none() {
            found = Some(agent.name.clone());
        }
    }
    found.map(|name| Identity { name, label: None })
}

/// The user name and password of `Proxy-Authorization: Basic …`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(PROXY_AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        h.insert(PROXY_AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn peer() -> SocketAddr {
        "192.0.2.7:40000".parse().unwrap()
    }

    fn agents() -> Vec<Agent> {
        ["quote-bot", "crm-bot"]
            .iter()
            .map(|n| Agent {
                name: (*n).to_owned(),
                token_sha256: token_hash(&format!("{n}-token")),
            })
            .collect()
    }

    #[test]
    fn without_agents_the_identity_is_the_address_and_a_user_name_only_a_label() {
        let who = identify(&[], &basic("quote-bot:anything"), peer()).unwrap();
        assert_eq!(who.name, "192.0.2.7");
        assert_eq!(who.label.as_deref(), Some("quote-bot"));
        let who = identify(&[], &HeaderMap::new(), peer()).unwrap();
        assert_eq!((who.name.as_str(), who.label), ("192.0.2.7", None));
    }

    #[test]
    fn with_agents_only_a_name_and_its_own_token_identify() {
        let agents = agents();
        let who = identify(&agents, &basic("quote-bot:quote-bot-token"), peer()).unwrap();
        assert_eq!((who.name.as_str(), who.label), ("quote-bot", None));
        assert!(identify(&agents, &HeaderMap::new(), peer()).is_none());
        assert!(identify(&agents, &basic("quote-bot:crm-bot-token"), peer()).is_none());
        assert!(identify(&agents, &basic("quote-bot:wrong"), peer()).is_none());
        assert!(identify(&agents, &basic("nobody:quote-bot-token"), peer()).is_none());
        assert!(identify(&agents, &basic("quote-bot"), peer()).is_none());
        let mut bearer = HeaderMap::new();
        bearer.insert(
            PROXY_AUTHORIZATION,
            "Bearer quote-bot-token".parse().unwrap(),
        );
        assert!(identify(&agents, &bearer, peer()).is_none());
    }
}
