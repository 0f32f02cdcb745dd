//! Checking that a request really comes from the chat platform it claims to come from.
//!
//! Platforms that call opsbot over HTTP (Slack's Events API and slash commands, GitHub
//! webhooks, DingTalk's robot callbacks …) sign each request with a secret shared with the
//! app. An adapter hands the raw header values and the raw body bytes to one of these functions
//! *before* it parses anything, and drops the request on any `Err`.
//!
//! - [`verify_slack`]: Slack's request signing `v0` (`X-Slack-Signature`,
//!   `X-Slack-Request-Timestamp`), with Slack's 5-minute replay window.
//! - [`verify_github`]: GitHub's `X-Hub-Signature-256` (no timestamp: GitHub signs none).
//! - [`verify_dingtalk`]: DingTalk robot callbacks (`timestamp` and `sign` headers, 1-hour
//!   window); [`dingtalk_sign`] makes the same value for outgoing robot messages.
//! - [`verify_hmac_sha256`] and [`check_timestamp`]: the generic pieces the others are built
//!   from, for platforms not listed here.
//!
//! The MACs are HMAC-SHA256 from the RustCrypto `hmac` and `sha2` crates, and the comparison
//! is theirs too ([`Mac::verify_slice`], constant-time): the signature the header claims is
//! decoded to bytes and handed to it, never compared as text. Hex digits are accepted in either
//! case (`A`–`F` and `a`–`f` decode to the same bytes; platforms send lower case); the prefix
//! (`v0=`, `sha256=`) must be exactly as the platform writes it. Header values are taken as
//! they are, without trimming. The error ([`VerifyError`]) says what was wrong and names the
//! header, but never echoes the secret, the expected signature, or the value that was sent.
//!
//! Bodies of any size are hashed as they are, without copying; limiting their size is the HTTP
//! layer's job.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 value.
const MAC_LEN: usize = 32;

/// Slack's replay window: a request whose timestamp is further than this from now, in either
/// direction, is refused. Exactly 300 s is still accepted, as in Slack's own example.
pub const SLACK_MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// DingTalk's replay window: "more than one hour apart" is refused.
pub const DINGTALK_MAX_SKEW: Duration = Duration::from_secs(60 * 60);

/// Slack's header with the request's Unix time in seconds.
pub const SLACK_TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
/// Slack's header with the signature, `v0=` and 64 hex digits.
pub const SLACK_SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// GitHub's header with the signature, `sha256=` and 64 hex digits.
pub const GITHUB_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// DingTalk's header with the request's Unix time in milliseconds.
pub const DINGTALK_TIMESTAMP_HEADER: &str = "timestamp";
/// DingTalk's header with the signature, standard base64 (44 characters).
pub const DINGTALK_SIGNATURE_HEADER: &str = "sign";

/// How a signature is written after its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// 64 hex digits, either case.
    Hex,
    /// Standard base64 with padding (`+`, `/`, `=`): 44 characters.
    Base64,
}

/// What a signature header looks like: its name (for error messages only), a fixed prefix
/// (may be empty) and the encoding of the 32 MAC bytes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmacFormat {
    /// The header's name, used only to say which header was wrong.
    pub header: &'static str,
    /// Text before the encoded MAC, matched exactly (`"v0="`, `"sha256="`, or `""`).
    pub prefix: &'static str,
    /// How the MAC is written.
    pub encoding: Encoding,
}

/// Slack's `X-Slack-Signature: v0=<hex>`.
pub const SLACK_FORMAT: HmacFormat = HmacFormat {
    header: SLACK_SIGNATURE_HEADER,
    prefix: "v0=",
    encoding: Encoding::Hex,
};
/// GitHub's `X-Hub-Signature-256: sha256=<hex>`.
pub const GITHUB_FORMAT: HmacFormat = HmacFormat {
    header: GITHUB_SIGNATURE_HEADER,
    prefix: "sha256=",
    encoding: Encoding::Hex,
};
/// DingTalk's `sign: <base64>`.
pub const DINGTALK_FORMAT: HmacFormat = HmacFormat {
    header: DINGTALK_SIGNATURE_HEADER,
    prefix: "",
    encoding: Encoding::Base64,
};

/// The unit of a timestamp header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Unix time in whole seconds (Slack).
    Seconds,
    /// Unix time in whole milliseconds (DingTalk).
    Milliseconds,
}

/// Why a request was refused. The message names the header and what was wrong with it; it never
/// contains the secret, the expected signature or the value that was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The secret is empty: nothing can be verified, so everything is refused.
    NoSecret,
    /// The timestamp header is absent or empty.
    MissingTimestamp {
        /// The header's name.
        header: &'static str,
    },
    /// The timestamp header is not a plain decimal number (digits only, no sign or spaces).
    BadTimestamp {
        /// The header's name.
        header: &'static str,
    },
    /// The timestamp is further from now than the replay window allows.
    Stale {
        /// The header's name.
        header: &'static str,
        /// How far the timestamp is from now.
        off_by: Duration,
        /// The largest distance accepted.
        window: Duration,
        /// `true` when the timestamp is in the future.
        ahead: bool,
    },
    /// The signature header is absent or empty.
    MissingSignature {
        /// The header's name.
        header: &'static str,
    },
    /// The signature header is not of the platform's form (prefix, length, alphabet).
    MalformedSignature {
        /// The header's name.
        header: &'static str,
        /// The prefix it must start with.
        prefix: &'static str,
        /// The encoding it must use after the prefix.
        encoding: Encoding,
    },
    /// The signature is well formed but does not match the body and the secret.
    Mismatch {
        /// The header's name.
        header: &'static str,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::NoSecret => {
                write!(f, "no signing secret is configured, so no request can be verified")
            }
            VerifyError::MissingTimestamp { header } => {
                write!(f, "the {header} header is missing or empty")
            }
            VerifyError::BadTimestamp { header } => write!(f, "the {header} header is not a Unix time (only the digits 0-9 are allowed)"),
            VerifyError::Stale {
                header,
                off_by,
                window,
                ahead,
            } => write!(
                f,
                "the {header} header is {} {} this server's clock, more than the {} allowed \
                 (a replayed or delayed request, or a clock out of step)",
                humantime::format_duration(*off_by),
                if *ahead { "ahead of" } else { "behind" },
                humantime::format_duration(*window),
            ),
            VerifyError::MissingSignature { header } => {
                write!(f, "the {header} header is missing or empty")
            }
            VerifyError::MalformedSignature { header, prefix, encoding } => {
                let body = match encoding {
                    Encoding::Hex => "64 hex digits",
                    Encoding::Base64 => "44 characters of standard base64",
                };
                if prefix.is_empty() {
                    write!(f, "the {header} header is not {body}")
                } else {
                    write!(f, "the {header} header is not `{prefix}` followed by {body}")
                }
            }
            VerifyError::Mismatch { header } => write!(
                f,
                "the {header} header does not match the request (a wrong secret, or the \
                 request was changed on the way)"
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The HMAC-SHA256 state over `parts`, hashed one after another as if concatenated.
fn mac_over(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes a key of any length (long keys are hashed first), so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC-SHA256 takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The header's MAC bytes, or why the header is not of `format`'s form. Checks the length
/// before decoding, so a huge hostile header costs nothing.
fn decode_signature(signature: Option<&str>, format: HmacFormat) -> Result<[u8; MAC_LEN], VerifyError> {
    let signature = match signature {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(VerifyError::MissingSignature { header: format.header });
        }
    };
    let malformed = VerifyError::MalformedSignature {
        header: format.header,
        prefix: format.prefix,
        encoding: format.encoding,
    };
    let Some(encoded) = signature.strip_prefix(format.prefix) else {
        return Err(malformed);
    };
    let mut out = [0u8; MAC_LEN];
    match format.encoding {
        Encoding::Hex => {
            if encoded.len() != 2 * MAC_LEN || hex::decode_to_slice(encoded, &mut out).is_err() {
                return Err(malformed);
            }
        }
        Encoding::Base64 => {
            // 32 bytes are 44 characters with one `=` of padding.
            if encoded.len() != 44 {
                return Err(malformed);
            }
            match BASE64.decode(encoded) {
                Ok(bytes) if bytes.len() == MAC_LEN => out.copy_from_slice(&bytes),
                _ => return Err(malformed),
            }
        }
    }
    Ok(out)
}

/// Encodes a MAC as `format` writes it.
fn encode(mac: &[u8], format: HmacFormat) -> String {
    let encoded = match format.encoding {
        Encoding::Hex => hex::encode(mac),
        Encoding::Base64 => BASE64.encode(mac),
    };
    format!("{}{}", format.prefix, encoded)
}

/// Signs `message` (given as parts, hashed one after another as if concatenated, so a large
/// body is never copied) with HMAC-SHA256 and writes the result as `format` says.
///
/// ```
/// use opsbot_core::verify::{hmac_sha256_sign, Encoding, HmacFormat};
///
/// let format = HmacFormat { header: "X-Signature", prefix: "sha256=", encoding: Encoding::Hex };
/// let sig = hmac_sha256_sign(b"key", &[b"The quick brown fox ", b"jumps over the lazy dog"], format);
/// assert_eq!(sig, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
/// ```
pub fn hmac_sha256_sign(secret: &[u8], message: &[&[u8]], format: HmacFormat) -> String {
    encode(&mac_over(secret, message).finalize().into_bytes(), format)
}

/// Checks a signature header of the form `format` against HMAC-SHA256 of `message` (given as
/// parts, hashed as if concatenated) under `secret`. `signature` is the header's value, `None`
/// when the header is absent. The comparison is constant-time ([`Mac::verify_slice`]).
///
/// Refuses an empty secret ([`VerifyError::NoSecret`]), an absent or empty header, a header
/// not of `format`'s form, and a signature that does not match.
///
/// ```
/// use opsbot_core::verify::{verify_hmac_sha256, Encoding, HmacFormat, VerifyError};
///
/// let format = HmacFormat { header: "X-Signature", prefix: "", encoding: Encoding::Base64 };
/// let sig = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=";
/// let msg: &[&[u8]] = &[b"The quick brown fox jumps over the lazy dog"];
/// assert_eq!(verify_hmac_sha256(b"key", msg, Some(sig), format), Ok(()));
/// assert_eq!(
///     verify_hmac_sha256(b"another key", msg, Some(sig), format),
///     Err(VerifyError::Mismatch { header: "X-Signature" })
/// );
/// ```
pub fn verify_hmac_sha256(secret: &[u8], message: &[&[u8]], signature: Option<&str>, format: HmacFormat) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let claimed = decode_signature(signature, format)?;
    mac_over(secret, message)
        .verify_slice(&claimed)
        .map_err(|_| VerifyError::Mismatch { header: format.header })
}

/// Checks a timestamp header against `now`: it must be present, a plain decimal number (ASCII
/// digits only: no sign, spaces or exponent) in `unit`, and at most `window` from `now` in
/// either direction (exactly `window` is accepted). Returns the parsed value.
///
/// ```
/// use std::time::Duration;
/// use chrono::DateTime;
/// use opsbot_core::verify::{check_timestamp, TimeUnit, VerifyError};
///
/// let now = DateTime::from_timestamp(1_531_420_618 + 300, 0).unwrap();
/// let window = Duration::from_secs(300);
/// let header = "X-Request-Timestamp";
/// assert_eq!(check_timestamp(header, Some("1531420618"), TimeUnit::Seconds, now, window), Ok(1_531_420_618));
/// assert!(matches!(
///     check_timestamp(header, Some("1531420617"), TimeUnit::Seconds, now, window),
///     Err(VerifyError::Stale { ahead: false, .. })
/// ));
/// assert_eq!(
///     check_timestamp(header, Some("-1"), TimeUnit::Seconds, now, window),
///     Err(VerifyError::BadTimestamp { header })
/// );
/// ```
pub fn check_timestamp(
    header: &'static str,
    value: Option<&str>,
    unit: TimeUnit,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<u64, VerifyError> {
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Err(VerifyError::MissingTimestamp { header }),
    };
    // `u64::from_str` alone would also take a leading `+`; the signed text must be the number.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp { header });
    }
    // More digits than a u64 holds: not a time this check could accept anyway.
    let stamp: u64 = value.parse().map_err(|_| VerifyError::BadTimestamp { header })?;
    let now = match unit {
        TimeUnit::Seconds => i128::from(now.timestamp()),
        TimeUnit::Milliseconds => i128::from(now.timestamp_millis()),
    };
    let diff = now - i128::from(stamp);
    let off = u64::try_from(diff.unsigned_abs()).unwrap_or(u64::MAX);
    let off_by = match unit {
        TimeUnit::Seconds => Duration::from_secs(off),
        TimeUnit::Milliseconds => Duration::from_millis(off),
    };
    if off_by > window {
        return Err(VerifyError::Stale {
            header,
            off_by,
            window,
            ahead: diff < 0,
        });
    }
    Ok(stamp)
}

/// The `X-Slack-Signature` Slack would send: `v0=` and the hex HMAC-SHA256, under the signing
/// secret, of `v0:` + timestamp + `:` + the raw body.
///
/// ```
/// use opsbot_core::verify::slack_signature;
///
/// let sig = slack_signature(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c");
/// assert_eq!(sig, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
/// ```
pub fn slack_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hmac_sha256_sign(secret, &[b"v0:", timestamp.as_bytes(), b":", body], SLACK_FORMAT)
}

/// Verifies a request from Slack (request signing `v0`): `timestamp` and `signature` are the
/// values of `X-Slack-Request-Timestamp` and `X-Slack-Signature` (`None` when absent), `body`
/// the raw body bytes as received, `now` this server's clock.
///
/// Refused, each with its own [`VerifyError`]: an empty secret; a missing timestamp; one that
/// is not a plain number of seconds; one more than 5 minutes ([`SLACK_MAX_SKEW`]) before or
/// after `now` (a replay); a missing signature; one that is not `v0=` and 64 hex digits; one
/// that does not match (compared in constant time).
///
/// ```
/// use chrono::Utc;
/// use opsbot_core::verify::{slack_signature, verify_slack, VerifyError};
///
/// let secret = b"my signing secret";
/// let now = Utc::now();
/// let ts = now.timestamp().to_string();
/// let body = b"token=x&command=%2Fdeploy&text=web";
/// let sig = slack_signature(secret, &ts, body);
/// assert_eq!(verify_slack(secret, Some(&ts), Some(&sig), body, now), Ok(()));
///
/// // The same request replayed ten minutes later.
/// let later = now + chrono::Duration::minutes(10);
/// assert!(matches!(
///     verify_slack(secret, Some(&ts), Some(&sig), body, later),
///     Err(VerifyError::Stale { .. })
/// ));
/// ```
pub fn verify_slack(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    check_timestamp(SLACK_TIMESTAMP_HEADER, timestamp, TimeUnit::Seconds, now, SLACK_MAX_SKEW)?;
    // Signed over the header's text exactly as sent (it is all digits by now).
    let timestamp = timestamp.unwrap_or_default().as_bytes();
    verify_hmac_sha256(secret, &[b"v0:", timestamp, b":", body], signature, SLACK_FORMAT)
}

/// The `X-Hub-Signature-256` GitHub would send: `sha256=` and the hex HMAC-SHA256 of the raw
/// body under the webhook secret.
///
/// ```
/// use opsbot_core::verify::github_signature;
///
/// assert_eq!(
///     github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    hmac_sha256_sign(secret, &[body], GITHUB_FORMAT)
}

/// Verifies a GitHub webhook delivery: `signature` is the `X-Hub-Signature-256` value (`None`
/// when absent), `body` the raw body bytes. GitHub signs no timestamp, so there is no replay
/// window; a receiver that must not act twice should remember `X-GitHub-Delivery` ids.
///
/// ```
/// use opsbot_core::verify::{verify_github, VerifyError};
///
/// let secret = b"It's a Secret to Everybody";
/// let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
/// assert_eq!(verify_github(secret, Some(sig), b"Hello, World!"), Ok(()));
/// assert_eq!(
///     verify_github(secret, Some(sig), b"Hello, World?"),
///     Err(VerifyError::Mismatch { header: "X-Hub-Signature-256" })
/// );
/// assert_eq!(
///     verify_github(secret, None, b"Hello, World!"),
///     Err(VerifyError::MissingSignature { header: "X-Hub-Signature-256" })
/// );
/// ```
pub fn verify_github(secret: &[u8], signature: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
    verify_hmac_sha256(secret, &[body], signature, GITHUB_FORMAT)
}

/// DingTalk's robot signature: standard base64 of HMAC-SHA256, under the secret, of the
/// millisecond timestamp + `"\n"` + the secret. DingTalk sends it in the `sign` header of a
/// robot callback; an outgoing robot message (`/robot/send?…&timestamp=…&sign=…`) carries the
/// same value in its URL query, where it must be percent-encoded (`+`, `/`, `=`) by the caller.
///
/// ```
/// use opsbot_core::verify::dingtalk_sign;
///
/// let secret = b"SEC0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";
/// assert_eq!(dingtalk_sign(secret, "1577262236757"), "MDRAfnyTrptsAtgqIyQGUqwu9WNIzE1Lc0AXvGjZf8I=");
/// ```
pub fn dingtalk_sign(secret: &[u8], timestamp_ms: &str) -> String {
    hmac_sha256_sign(secret, &[timestamp_ms.as_bytes(), b"\n", secret], DINGTALK_FORMAT)
}

/// Verifies a DingTalk robot callback: `timestamp` and `sign` are the values of its `timestamp`
/// (Unix milliseconds) and `sign` headers (`None` when absent), `now` this server's clock.
/// Refused when the timestamp is more than an hour ([`DINGTALK_MAX_SKEW`]) from `now`, or the
/// signature is not 44 base64 characters or does not match.
///
/// DingTalk's signature covers the timestamp and the secret but **not the body**: it shows the
/// caller knows the secret, not that the body is unchanged, and it can be replayed with another
/// body within the hour. Rely on TLS for the body, and treat the callback's content accordingly.
///
/// ```
/// use chrono::Utc;
/// use opsbot_core::verify::{dingtalk_sign, verify_dingtalk};
///
/// let secret = b"SECexample";
/// let now = Utc::now();
/// let ts = now.timestamp_millis().to_string();
/// let sign = dingtalk_sign(secret, &ts);
/// assert_eq!(verify_dingtalk(secret, Some(&ts), Some(&sign), now), Ok(()));
/// assert!(verify_dingtalk(b"SECother", Some(&ts), Some(&sign), now).is_err());
/// ```
pub fn verify_dingtalk(secret: &[u8], timestamp: Option<&str>, sign: Option<&str>, now: DateTime<Utc>) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    check_timestamp(DINGTALK_TIMESTAMP_HEADER, timestamp, TimeUnit::Milliseconds, now, DINGTALK_MAX_SKEW)?;
    let timestamp = timestamp.unwrap_or_default().as_bytes();
    verify_hmac_sha256(secret, &[timestamp, b"\n", secret], sign, DINGTALK_FORMAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's worked example, "Verifying requests from Slack"
    // (docs.slack.dev/authentication/verifying-requests-from-slack).
    const SLACK_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: &str = "1531420618";
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    // GitHub's test values, "Validating webhook deliveries"
    // (docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // DingTalk publishes no vector; this one was computed with Python's hmac, hashlib and
    // base64 modules (see the module's tests below for the same check run live).
    const DING_SECRET: &[u8] = b"SEC0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";
    const DING_TS: &str = "1577262236757";
    const DING_SIGN: &str = "MDRAfnyTrptsAtgqIyQGUqwu9WNIzE1Lc0AXvGjZf8I=";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn at_ms(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    const SLACK_NOW: i64 = 1_531_420_618;

    fn slack(ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64) -> Result<(), VerifyError> {
        verify_slack(SLACK_SECRET, ts, sig, body, at(now))
    }

    #[test]
    fn slack_documented_example() {
        assert_eq!(slack_signature(SLACK_SECRET, SLACK_TS, SLACK_BODY), SLACK_SIG);
        assert_eq!(slack(Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, SLACK_NOW + 60), Ok(()));
    }

    #[test]
    fn github_documented_example() {
        assert_eq!(github_signature(GITHUB_SECRET, GITHUB_BODY), GITHUB_SIG);
        assert_eq!(verify_github(GITHUB_SECRET, Some(GITHUB_SIG), GITHUB_BODY), Ok(()));
    }

    #[test]
    fn generic_matches_the_well_known_hmac_sha256_vector() {
        // The widely published HMAC-SHA256("key", "The quick brown fox …"), also computed with
        // Python's hmac module.
        let msg: &[&[u8]] = &[b"The quick brown fox jumps over the lazy dog"];
        let hex_format = HmacFormat {
            header: "X-Sig",
            prefix: "sha256=",
            encoding: Encoding::Hex,
        };
        let b64_format = HmacFormat {
            header: "X-Sig",
            prefix: "",
            encoding: Encoding::Base64,
        };
        let hex_sig = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        let b64_sig = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=";
        assert_eq!(hmac_sha256_sign(b"key", msg, hex_format), hex_sig);
        assert_eq!(hmac_sha256_sign(b"key", msg, b64_format), b64_sig);
        assert_eq!(verify_hmac_sha256(b"key", msg, Some(hex_sig), hex_format), Ok(()));
        assert_eq!(verify_hmac_sha256(b"key", msg, Some(b64_sig), b64_format), Ok(()));
        // Parts are hashed as if concatenated.
        let split: &[&[u8]] = &[b"The quick", b"", b" brown fox jumps over the lazy dog"];
        assert_eq!(verify_hmac_sha256(b"key", split, Some(hex_sig), hex_format), Ok(()));
        // A signature of one format is malformed in the other.
        assert!(matches!(
            verify_hmac_sha256(b"key", msg, Some(b64_sig), hex_format),
            Err(VerifyError::MalformedSignature { .. })
        ));
        // Base64 with its padding dropped, or URL-safe characters, is not standard base64.
        let unpadded = b64_sig.trim_end_matches('=');
        let urlsafe = b64_sig.replace('+', "-");
        for bad in [unpadded, urlsafe.as_str()] {
            assert!(matches!(
                verify_hmac_sha256(b"key", msg, Some(bad), b64_format),
                Err(VerifyError::MalformedSignature { .. })
            ));
        }
    }

    #[test]
    fn dingtalk_sign_and_verify() {
        assert_eq!(dingtalk_sign(DING_SECRET, DING_TS), DING_SIGN);
        let ts: i64 = DING_TS.parse().unwrap();
        let ok = |now_ms: i64| verify_dingtalk(DING_SECRET, Some(DING_TS), Some(DING_SIGN), at_ms(now_ms));
        assert_eq!(ok(ts), Ok(()));
        assert_eq!(ok(ts + 3_600_000), Ok(()));
        assert_eq!(ok(ts - 3_600_000), Ok(()));
        assert!(matches!(ok(ts + 3_600_001), Err(VerifyError::Stale { ahead: false, .. })));
        assert!(matches!(ok(ts - 3_600_001), Err(VerifyError::Stale { ahead: true, .. })));
        assert_eq!(
            verify_dingtalk(b"SECwrong", Some(DING_TS), Some(DING_SIGN), at_ms(ts)),
            Err(VerifyError::Mismatch { header: "sign" })
        );
        assert_eq!(
            verify_dingtalk(DING_SECRET, Some("1577262236758"), Some(DING_SIGN), at_ms(ts)),
            Err(VerifyError::Mismatch { header: "sign" })
        );
        assert_eq!(
            verify_dingtalk(DING_SECRET, Some(DING_TS), None, at_ms(ts)),
            Err(VerifyError::MissingSignature { header: "sign" })
        );
        // A timestamp in seconds is an hour-plus-decades away in milliseconds.
        assert!(matches!(
            verify_dingtalk(DING_SECRET, Some("1577262236"), Some(DING_SIGN), at_ms(ts)),
            Err(VerifyError::Stale { .. })
        ));
    }

    #[test]
    fn slack_window_boundaries_are_inclusive_at_300_seconds() {
        let now = SLACK_NOW;
        for offset in [-300i64, -299, -1, 0, 1, 299, 300] {
            let ts = (now + offset).to_string();
            let sig = slack_signature(SLACK_SECRET, &ts, SLACK_BODY);
            assert_eq!(slack(Some(&ts), Some(&sig), SLACK_BODY, now), Ok(()), "offset {offset}");
        }
        for (offset, ahead) in [(-301i64, false), (301, true), (-86_400, false), (86_400, true)] {
            let ts = (now + offset).to_string();
            let sig = slack_signature(SLACK_SECRET, &ts, SLACK_BODY);
            match slack(Some(&ts), Some(&sig), SLACK_BODY, now) {
                Err(VerifyError::Stale {
                    off_by,
                    window,
                    ahead: a,
                    header,
                }) => {
                    assert_eq!(off_by, Duration::from_secs(offset.unsigned_abs()));
                    assert_eq!(window, SLACK_MAX_SKEW);
                    assert_eq!(a, ahead, "offset {offset}");
                    assert_eq!(header, SLACK_TIMESTAMP_HEADER);
                }
                other => panic!("offset {offset}: {other:?}"),
            }
        }
        // Sub-second parts of `now` do not widen the window: 300.9 s counts as 300 s.
        let now_frac = DateTime::from_timestamp(now + 300, 900_000_000).unwrap();
        assert_eq!(
            verify_slack(SLACK_SECRET, Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, now_frac),
            Ok(())
        );
    }

    #[test]
    fn slack_refusals_each_have_their_own_error() {
        let now = SLACK_NOW;
        let sig = Some(SLACK_SIG);
        let ts = Some(SLACK_TS);
        let missing_ts = VerifyError::MissingTimestamp {
            header: SLACK_TIMESTAMP_HEADER,
        };
        assert_eq!(slack(None, sig, SLACK_BODY, now), Err(missing_ts.clone()));
        assert_eq!(slack(Some(""), sig, SLACK_BODY, now), Err(missing_ts));
        let bad_ts = VerifyError::BadTimestamp {
            header: SLACK_TIMESTAMP_HEADER,
        };
        for t in [
            "abc",
            "-1531420618",
            "+1531420618",
            " 1531420618",
            "1531420618 ",
            "1531420618.0",
            "1.531420618e9",
            "0x5B47A3CA",
            "١٥٣١٤٢٠٦١٨", // Arabic-Indic digits
            "1531420618\n",
            "99999999999999999999999999",
        ] {
            assert_eq!(slack(Some(t), sig, SLACK_BODY, now), Err(bad_ts.clone()), "{t:?}");
        }
        let missing_sig = VerifyError::MissingSignature {
            header: SLACK_SIGNATURE_HEADER,
        };
        assert_eq!(slack(ts, None, SLACK_BODY, now), Err(missing_sig.clone()));
        assert_eq!(slack(ts, Some(""), SLACK_BODY, now), Err(missing_sig));
        let malformed = VerifyError::MalformedSignature {
            header: SLACK_SIGNATURE_HEADER,
            prefix: "v0=",
            encoding: Encoding::Hex,
        };
        let hex = &SLACK_SIG[3..];
        let no_prefix = hex.to_string();
        let v1 = format!("v1={hex}");
        let upper_prefix = format!("V0={hex}");
        let short = &SLACK_SIG[..SLACK_SIG.len() - 1];
        let long = format!("{SLACK_SIG}0");
        let non_hex = format!("v0={}g", &hex[..63]);
        let non_ascii = format!("v0={}é", &hex[..62]);
        let spaced = format!(" {SLACK_SIG}");
        let two = format!("{SLACK_SIG},{SLACK_SIG}");
        for s in [
            "v0=",
            "v0",
            no_prefix.as_str(),
            v1.as_str(),
            upper_prefix.as_str(),
            short,
            long.as_str(),
            non_hex.as_str(),
            non_ascii.as_str(),
            spaced.as_str(),
            two.as_str(),
        ] {
            assert_eq!(slack(ts, Some(s), SLACK_BODY, now), Err(malformed.clone()), "{s:?}");
        }
        let mismatch = VerifyError::Mismatch {
            header: SLACK_SIGNATURE_HEADER,
        };
        // Wrong secret, changed body, changed (still fresh) timestamp.
        assert_eq!(
            verify_slack(b"8f742231b10e8888abcd99yyyzzz85a6", ts, sig, SLACK_BODY, at(now)),
            Err(mismatch.clone())
        );
        let mut body = SLACK_BODY.to_vec();
        body.push(b'&');
        assert_eq!(slack(ts, sig, &body, now), Err(mismatch.clone()));
        assert_eq!(slack(Some("1531420619"), sig, SLACK_BODY, now), Err(mismatch.clone()));
        assert_eq!(verify_slack(b"", ts, sig, SLACK_BODY, at(now)), Err(VerifyError::NoSecret));
        // The timestamp is checked first: a stale request is stale whatever its signature.
        assert!(matches!(
            slack(ts, Some("garbage"), SLACK_BODY, now + 301),
            Err(VerifyError::Stale { .. })
        ));
    }

    #[test]
    fn a_signature_differing_in_any_one_hex_digit_is_refused() {
        let hex = &SLACK_SIG[3..];
        for i in 0..hex.len() {
            let c = hex.as_bytes()[i];
            for replacement in b"0123456789abcdef".iter().filter(|&&r| r != c) {
                let mut changed = hex.as_bytes().to_vec();
                changed[i] = *replacement;
                let sig = format!("v0={}", String::from_utf8(changed).unwrap());
                assert_eq!(
                    slack(Some(SLACK_TS), Some(&sig), SLACK_BODY, SLACK_NOW),
                    Err(VerifyError::Mismatch {
                        header: SLACK_SIGNATURE_HEADER
                    }),
                    "digit {i} -> {}",
                    *replacement as char
                );
            }
        }
        let gh_hex = &GITHUB_SIG[7..];
        let mut changed = gh_hex.as_bytes().to_vec();
        changed[63] = if changed[63] == b'0' { b'1' } else { b'0' };
        let sig = format!("sha256={}", String::from_utf8(changed).unwrap());
        assert_eq!(
            verify_github(GITHUB_SECRET, Some(&sig), GITHUB_BODY),
            Err(VerifyError::Mismatch {
                header: GITHUB_SIGNATURE_HEADER
            })
        );
    }

    #[test]
    fn upper_and_mixed_case_hex_is_accepted_the_prefix_is_not() {
        // Decided: hex digits decode to the same MAC bytes in either case, and the bytes are
        // what is compared, so case is accepted everywhere; the prefix is matched exactly.
        let upper = format!("v0={}", SLACK_SIG[3..].to_ascii_uppercase());
        assert_eq!(slack(Some(SLACK_TS), Some(&upper), SLACK_BODY, SLACK_NOW), Ok(()));
        let mixed: String = SLACK_SIG
            .char_indices()
            .map(|(i, c)| if i >= 3 && i % 2 == 0 { c.to_ascii_uppercase() } else { c })
            .collect();
        assert_eq!(slack(Some(SLACK_TS), Some(&mixed), SLACK_BODY, SLACK_NOW), Ok(()));
        let gh_upper = format!("sha256={}", GITHUB_SIG[7..].to_ascii_uppercase());
        assert_eq!(verify_github(GITHUB_SECRET, Some(&gh_upper), GITHUB_BODY), Ok(()));
        assert!(matches!(
            verify_github(GITHUB_SECRET, Some(&GITHUB_SIG.to_ascii_uppercase()), GITHUB_BODY),
            Err(VerifyError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn messages_say_what_is_wrong_and_never_leak_secrets_or_signatures() {
        let expected_hex = &SLACK_SIG[3..];
        let secret = std::str::from_utf8(SLACK_SECRET).unwrap();
        let wrong = format!("v0={}", "0".repeat(64));
        let cases: Vec<(Result<(), VerifyError>, &str)> = vec![
            (
                verify_slack(b"", Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, at(SLACK_NOW)),
                "no signing secret",
            ),
            (
                slack(None, Some(SLACK_SIG), SLACK_BODY, SLACK_NOW),
                "X-Slack-Request-Timestamp header is missing",
            ),
            (
                slack(Some("soon"), Some(SLACK_SIG), SLACK_BODY, SLACK_NOW),
                "X-Slack-Request-Timestamp header is not a Unix time",
            ),
            (
                slack(Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, SLACK_NOW + 361),
                "is 6m 1s behind this server's clock, more than the 5m allowed",
            ),
            (
                slack(Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, SLACK_NOW - 400),
                "is 6m 40s ahead of this server's clock",
            ),
            (
                slack(Some(SLACK_TS), None, SLACK_BODY, SLACK_NOW),
                "X-Slack-Signature header is missing",
            ),
            (
                slack(Some(SLACK_TS), Some(expected_hex), SLACK_BODY, SLACK_NOW),
                "X-Slack-Signature header is not `v0=` followed by 64 hex digits",
            ),
            (
                slack(Some(SLACK_TS), Some(&wrong), SLACK_BODY, SLACK_NOW),
                "X-Slack-Signature header does not match the request",
            ),
            (
                verify_dingtalk(DING_SECRET, Some(DING_TS), Some("x"), at_ms(1_577_262_236_757)),
                "the sign header is not 44 characters of standard base64",
            ),
        ];
        for (result, wanted) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(wanted), "{message:?} lacks {wanted:?}");
            assert!(!message.contains(secret), "{message:?}");
            assert!(!message.contains(&expected_hex[..16]), "{message:?}");
            assert!(!message.contains("0000000000"), "echoes the sent value: {message:?}");
        }
    }

    /// Tiny deterministic generator for test data (xorshift64*); not for anything secret.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn hostile_inputs_are_refused_without_panicking() {
        let huge_body = vec![0xffu8; 4 << 20];
        let long_header = "9".repeat(100_000);
        let long_sig = format!("v0={}", "a".repeat(100_000));
        let long_b64 = "A".repeat(100_000);
        let nul = "v0=\0".to_string();
        let strings: Vec<&str> = vec![
            "",
            " ",
            "\0",
            "v0=",
            "sha256=",
            "=",
            "é",
            "日本語",
            "\u{202e}v0=deadbeef",
            "\u{feff}1531420618",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "-9223372036854775808",
            "00000000000000000000000000001531420618",
            "0",
            &long_header,
            &long_sig,
            &long_b64,
            &nul,
            "====",
            "v0=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "sha256=ＡＢ",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let bodies: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\0".to_vec(),
            "ünïcødé ✓".as_bytes().to_vec(),
            vec![0xc3, 0x28, 0xff, 0xfe],
            rng.bytes(1000),
        ];
        let nows = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::UNIX_EPOCH,
            at(SLACK_NOW),
            DateTime::<Utc>::MAX_UTC,
        ];
        let secrets: [&[u8]; 3] = [b"", b"s", SLACK_SECRET];
        let mut checked = 0usize;
        for secret in secrets {
            for now in nows {
                for body in &bodies {
                    for a in strings.iter().map(|s| Some(*s)).chain([None]) {
                        for b in strings.iter().map(|s| Some(*s)).chain([None]) {
                            assert!(verify_slack(secret, a, b, body, now).is_err());
                            assert!(verify_dingtalk(secret, a, b, now).is_err());
                            checked += 2;
                        }
                        assert!(verify_github(secret, a, body).is_err());
                        for format in [SLACK_FORMAT, GITHUB_FORMAT, DINGTALK_FORMAT] {
                            assert!(verify_hmac_sha256(secret, &[body], a, format).is_err());
                        }
                        let _ = check_timestamp("t", a, TimeUnit::Seconds, now, SLACK_MAX_SKEW);
                        let _ = check_timestamp("t", a, TimeUnit::Milliseconds, now, Duration::MAX);
                        checked += 4;
                    }
                }
            }
        }
        assert!(checked > 10_000);
        // A huge body is hashed, not refused for its size, and verifies when signed.
        let now = at(SLACK_NOW);
        let sig = slack_signature(SLACK_SECRET, SLACK_TS, &huge_body);
        assert_eq!(verify_slack(SLACK_SECRET, Some(SLACK_TS), Some(&sig), &huge_body, now), Ok(()));
        assert!(verify_slack(SLACK_SECRET, Some(SLACK_TS), Some(SLACK_SIG), &huge_body, now).is_err());
        assert!(verify_github(GITHUB_SECRET, Some(GITHUB_SIG), &huge_body).is_err());
        // Extreme clocks with a well-formed timestamp: stale, not a panic or an overflow.
        for now in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            assert!(matches!(
                verify_slack(SLACK_SECRET, Some(SLACK_TS), Some(SLACK_SIG), SLACK_BODY, now),
                Err(VerifyError::Stale { .. })
            ));
            assert!(matches!(
                verify_slack(SLACK_SECRET, Some("18446744073709551615"), Some(SLACK_SIG), SLACK_BODY, now),
                Err(VerifyError::Stale { .. })
            ));
        }
    }

    /// Computes the Slack, GitHub and DingTalk signatures with Python's standard library, for
    /// values passed as hex so any bytes survive the trip. `None` when python3 is missing.
    fn python_signatures(secret: &[u8], ts: &str, body: &[u8]) -> Option<[String; 3]> {
        const SCRIPT: &str = "import sys, hmac, hashlib, base64\n\
            s, t, b = (bytes.fromhex(x) for x in sys.argv[1:4])\n\
            print('v0=' + hmac.new(s, b'v0:' + t + b':' + b, hashlib.sha256).hexdigest())\n\
            print('sha256=' + hmac.new(s, b, hashlib.sha256).hexdigest())\n\
            print(base64.b64encode(hmac.new(s, t + b'\\n' + s, hashlib.sha256).digest()).decode())\n";
        let out = match std::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(hex::encode(secret))
            .arg(hex::encode(ts))
            .arg(hex::encode(body))
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("running python3: {e}"),
        };
        assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        Some(lines.try_into().expect("three lines from python3"))
    }

    #[test]
    fn signatures_match_pythons_standard_library() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("cross-check seed {seed:#x}");
        let mut rng = Rng(seed);
        let mut cases: Vec<(Vec<u8>, String, Vec<u8>)> = vec![
            (SLACK_SECRET.to_vec(), SLACK_TS.to_string(), SLACK_BODY.to_vec()),
            (
                b"s3cr\xc3\xa9t".to_vec(),
                "1700000000".to_string(),
                "{\"text\":\"déploie ✓ 日本語 🚀\"}".as_bytes().to_vec(),
            ),
            (b"k".to_vec(), "1".to_string(), vec![0, 0xff, 0xfe, b'\n', b'\r', 0x80, 0]),
            (rng.bytes(200), "1531420618".to_string(), Vec::new()),
        ];
        for _ in 0..6 {
            let secret_len = 1 + (rng.next() % 100) as usize;
            let body_len = (rng.next() % 5000) as usize;
            let ts = (rng.next() % 4_000_000_000).to_string();
            cases.push((rng.bytes(secret_len), ts, rng.bytes(body_len)));
        }
        for (secret, ts, body) in &cases {
            let Some([py_slack, py_github, py_ding]) = python_signatures(secret, ts, body) else {
                let note = "python3 is not installed, so the cross-check with Python's hmac cannot run";
                if std::env::var("OPSBOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
                    panic!("{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
                }
                eprintln!("note: {note}; skipped");
                return;
            };
            assert_eq!(slack_signature(secret, ts, body), py_slack, "seed {seed:#x}");
            assert_eq!(github_signature(secret, body), py_github, "seed {seed:#x}");
            assert_eq!(dingtalk_sign(secret, ts), py_ding, "seed {seed:#x}");
            // And the verifier accepts what Python made, at the signed time.
            let now = at(ts.parse().unwrap());
            assert_eq!(verify_slack(secret, Some(ts), Some(&py_slack), body, now), Ok(()));
            assert_eq!(verify_github(secret, Some(&py_github), body), Ok(()));
        }
    }
}
