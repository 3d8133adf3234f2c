//! The gateway's LiteLLM release, and whether it lies in the range this operator was tested on.
//!
//! Where it is told (checked with curl on both tested releases):
//! - `GET /health/readiness` (no auth): `{"status","db"}` only: no version on 1.98.0 nor on 1.108.7, despite the
//!   upstream docs.
//! - `GET /health/readiness/details` (admin key): `litellm_version`, on 1.98.0 and 1.108.7. Read first.
//! - `GET /openapi.json` (no auth): `info.version`, on 1.98.0 and 1.108.7. A large document: the fallback only.
use std::cmp::Ordering;
use std::fmt;

/// The oldest and newest LiteLLM releases the test suite runs against (scripts/test.sh starts both).
pub const OLDEST_TESTED: &str = "1.98.0";
pub const NEWEST_TESTED: &str = "1.108.7";

/// A `major.minor.patch` release; anything after the patch number (`1.108.7-stable`, `rc1`) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release(u32, u32, u32);

impl Release {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches('v');
        let mut parts = s.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self(major, minor, patch))
    }

    fn tested_range() -> (Self, Self) {
        // Both constants are well-formed; a typo would show in the unit test below.
        let parse = |s| Self::parse(s).unwrap_or(Self(0, 0, 0));
        (parse(OLDEST_TESTED), parse(NEWEST_TESTED))
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the operator knows of the gateway's release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayVersion {
    /// Within the tested range.
    Tested(String),
    /// Older or newer than any tested release: the operator still works, and says so.
    Untested(String),
    /// The gateway does not say, or says something that is no release number.
    Unknown,
}

impl GatewayVersion {
    pub fn classify(reported: Option<&str>) -> Self {
        let Some(text) = reported.map(str::trim).filter(|t| !t.is_empty()) else {
            return Self::Unknown;
        };
        let Some(release) = Release::parse(text) else {
            return Self::Unknown;
        };
        let (oldest, newest) = Release::tested_range();
        match (release.cmp(&oldest), release.cmp(&newest)) {
            (Ordering::Less, _) | (_, Ordering::Greater) => Self::Untested(text.to_owned()),
            _ => Self::Tested(text.to_owned()),
        }
    }

    /// The version label of `routero_gateway_info`.
    pub fn label(&self) -> &str {
        match self {
            Self::Tested(v) | Self::Untested(v) => v,
            Self::Unknown => "unknown",
        }
    }

    pub fn is_tested(&self) -> bool {
        matches!(self, Self::Tested(_))
    }

    /// The reason and message of the `GatewayVersion` condition, for a release outside the tested range.
    pub fn warning(&self) -> Option<(&'static str, String)> {
        let range = format!("tested on LiteLLM {OLDEST_TESTED} to {NEWEST_TESTED}");
        match self {
            Self::Tested(_) => None,
            Self::Untested(v) => Some((
                "UntestedVersion",
                format!("the gateway runs LiteLLM {v}; this operator is {range}"),
            )),
            Self::Unknown => Some((
                "UnknownVersion",
                format!(
                    "the gateway does not report its LiteLLM version; this operator is {range}"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_and_order_numerically() {
        assert_eq!(Release::parse("1.108.7"), Some(Release(1, 108, 7)));
        assert_eq!(Release::parse("v1.98.0-stable"), Some(Release(1, 98, 0)));
        assert_eq!(Release::parse("1.74"), Some(Release(1, 74, 0)));
        assert_eq!(Release::parse("latest"), None);
        assert!(
            Release::parse("1.98.0") < Release::parse("1.108.7"),
            "not by text"
        );
        assert_eq!(
            Release::tested_range(),
            (Release(1, 98, 0), Release(1, 108, 7))
        );
    }

    #[test]
    fn the_tested_range_is_inclusive_and_everything_else_warns() {
        for v in ["1.98.0", "1.100.2", "1.108.7"] {
            assert!(GatewayVersion::classify(Some(v)).is_tested(), "{v}");
        }
        for v in ["1.97.9", "1.108.8", "1.108.11", "2.0.0"] {
            let g = GatewayVersion::classify(Some(v));
            assert_eq!(g, GatewayVersion::Untested(v.into()));
            let (reason, message) = g.warning().expect("warning");
            assert_eq!(reason, "UntestedVersion");
            assert!(
                message.contains(v) && message.contains(NEWEST_TESTED),
                "{message}"
            );
        }
        assert_eq!(GatewayVersion::classify(None), GatewayVersion::Unknown);
        assert_eq!(
            GatewayVersion::classify(Some("dev")),
            GatewayVersion::Unknown
        );
        assert_eq!(GatewayVersion::Unknown.label(), "unknown");
        assert_eq!(
            GatewayVersion::Unknown.warning().map(|w| w.0),
            Some("UnknownVersion")
        );
    }
}
