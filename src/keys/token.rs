//! Minting tokens (spec section 8): the key's id in kebab case, a `-`, then a random
//! segment from the operating system's cryptographic source. There is no fallback: if
//! the OS cannot give random bytes, no token is made.

use crate::core::credentials::digest;
use std::fmt;

/// Random bytes in a token: 256 bits, shown as 64 lowercase hex characters.
pub const RANDOM_BYTES: usize = 32;

/// A plaintext token. It has no `Display`, and its `Debug` hides the value, so it can
/// only reach output through [`Token::expose`].
pub struct Token(String);

impl Token {
    /// The plaintext, for the one line that hands it to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `tokenHash` the managed-keys file stores.
    pub fn hash_hex(&self) -> String {
        hash_hex(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of `token` in lowercase hex, as the loader expects `tokenHash`.
pub fn hash_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// `a-z 0-9` kept, every other run of characters one `-`, no `-` at either end. The
/// result only uses characters a bearer token may carry.
pub fn kebab(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A new token for `id`, with its random part from `fill` (the OS source in
/// [`mint_os`]; a fixed source in tests).
pub fn mint<E>(id: &str, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Token, E> {
    let mut bytes = [0u8; RANDOM_BYTES];
    fill(&mut bytes)?;
    let prefix = kebab(id);
    let random = hex::encode(bytes);
    Ok(Token(if prefix.is_empty() {
        random
    } else {
        format!("{prefix}-{random}")
    }))
}

/// A new token for `id` from the OS's cryptographic random source.
pub fn mint_os(id: &str) -> Result<Token, getrandom::Error> {
    mint(id, getrandom::fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_keeps_only_bearer_safe_characters() {
        assert_eq!(kebab("ci-bot:eu_1"), "ci-bot-eu-1");
        assert_eq!(kebab("__ops::"), "ops");
        assert_eq!(kebab("::"), "");
    }

    #[test]
    fn tokens_are_prefix_dash_random_and_hash_as_the_loader_does() {
        let t = mint("ci_bot", |b: &mut [u8]| {
            b.fill(0xab);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(t.expose(), format!("ci-bot-{}", "ab".repeat(32)));
        assert_eq!(t.hash_hex(), hex::encode(digest(t.expose())));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn a_failing_source_makes_no_token() {
        let got = mint("x", |_: &mut [u8]| Err("no entropy"));
        assert_eq!(got.unwrap_err(), "no entropy");
    }

    #[test]
    fn os_tokens_differ() {
        let a = mint_os("k").unwrap();
        let b = mint_os("k").unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), "k-".len() + 2 * RANDOM_BYTES);
    }
}
