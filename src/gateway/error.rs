//! One error type for every gateway call, carrying the HTTP status and the gateway's own message.
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway answered with a non-200 status.
    #[error("gateway answered {status}: {message}")]
    Api {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, or the per-call timeout ran out.
    #[error("gateway unreachable: {0}")]
    Transport(String),
    /// A 200 whose body did not have the expected shape.
    #[error("gateway reply could not be read: {0}")]
    Decode(String),
    /// The admin key could not be read from its file or variable.
    #[error("gateway admin key unavailable: {0}")]
    AdminKey(String),
}

impl GatewayError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The gateway is down, overloaded or lost its database: worth trying again later, nothing is wrong with the
    /// request itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api {
                status, message, ..
            } => {
                *status == 429
                    || (*status >= 500 && !self.is_licence_gated())
                    || (*status == 400 && message.contains("DB not connected"))
            }
            Self::Decode(_) | Self::AdminKey(_) => false,
        }
    }

    /// Open-source LiteLLM answers 500 "... is an Enterprise feature" to licence-gated routes such as regenerate.
    pub fn is_licence_gated(&self) -> bool {
        matches!(self, Self::Api { status: 500, message, .. } if message.contains("Enterprise feature") || message.contains("enterprise feature"))
    }

    /// The gateway's message, for conditions and Events.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Self::Api { status, .. } => format!("http_{status}"),
            Self::Transport(_) => "transport".into(),
            Self::Decode(_) => "decode".into(),
            Self::AdminKey(_) => "admin_key".into(),
        }
    }
}

/// The three error shapes of gateway-api.md §1.2.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Envelope { error: Envelope },
    Detail { detail: Detail },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    message: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Detail {
    Validation(Vec<ValidationItem>),
    Other(Value),
}

#[derive(Deserialize)]
struct ValidationItem {
    #[serde(default)]
    loc: Vec<Value>,
    #[serde(default)]
    msg: String,
}

const MAX_MESSAGE: usize = 500;

/// Builds the error for a non-200 reply from its status and body.
pub fn from_reply(status: u16, body: &str, retry_after: Option<Duration>) -> GatewayError {
    GatewayError::Api {
        status,
        message: redact(&message_of(body)),
        retry_after,
    }
}

fn message_of(body: &str) -> String {
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody::Envelope { error }) => unwrap_python_dict(&value_text(&error.message)),
        Ok(ErrorBody::Detail {
            detail: Detail::Validation(items),
        }) => items
            .iter()
            .map(|i| {
                let loc: Vec<String> = i.loc.iter().map(value_text).collect();
                format!("{}: {}", loc.join("."), i.msg)
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(ErrorBody::Detail {
            detail: Detail::Other(v),
        }) => match v.get("error") {
            Some(e) => value_text(e),
            None => value_text(&v),
        },
        Err(_) => body.trim().to_owned(),
    };
    truncate(text)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Structured errors arrive as a one-entry Python-literal dict, `{'error': 'No keys found'}` or
/// `{'message': '…'}`. Show only the inner text.
fn unwrap_python_dict(s: &str) -> String {
    let t = s.trim();
    let inner = t
        .strip_prefix("{'")
        .and_then(|rest| rest.split_once("': "))
        .and_then(|(_, value)| {
            value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix("'}"))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix("\"}")))
        });
    inner.unwrap_or(t).to_owned()
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Hides anything that looks like a raw key (`sk-` followed by key characters), in case a gateway echoes one.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        if len >= 6 {
            out.push_str("sk-***");
        } else {
            out.push_str(&rest[i..i + 3 + len]);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(status: u16, body: &str) -> (u16, String) {
        match from_reply(status, body, None) {
            GatewayError::Api {
                status, message, ..
            } => (status, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn envelope_with_python_dict_message() {
        let body = r#"{"error":{"message":"{'error': 'No keys found'}","type":"internal_server_error","param":null,"code":"404"}}"#;
        assert_eq!(msg(404, body), (404, "No keys found".into()));
        let body = r#"{"error":{"message":"{'message': 'Team not found, passed team id: x.'}","type":"auth_error","param":"None","code":"404"}}"#;
        assert_eq!(msg(404, body).1, "Team not found, passed team id: x.");
    }

    #[test]
    fn envelope_with_plain_message_and_object_message() {
        let body = r#"{"error":{"message":"Key not found in database","type":"not_found_error","param":"key","code":"404"}}"#;
        assert_eq!(msg(404, body).1, "Key not found in database");
        let body =
            r#"{"error":{"message":{"error":"old shape"},"type":"x","param":"None","code":"400"}}"#;
        assert_eq!(msg(400, body).1, r#"{"error":"old shape"}"#);
    }

    #[test]
    fn bare_detail() {
        let body = r#"{"detail":{"error":"Team not found, passed team_id=abc"}}"#;
        assert_eq!(msg(404, body).1, "Team not found, passed team_id=abc");
    }

    #[test]
    fn fastapi_422() {
        let body = r#"{"detail":[{"type":"float_parsing","loc":["body","max_budget"],"msg":"Input should be a valid number, unable to parse string as a number","input":"x"}]}"#;
        assert_eq!(
            msg(422, body).1,
            "body.max_budget: Input should be a valid number, unable to parse string as a number"
        );
    }

    #[test]
    fn raw_text_fallback_is_truncated() {
        assert_eq!(
            msg(502, "<html>Bad Gateway</html>").1,
            "<html>Bad Gateway</html>"
        );
        let long = "x".repeat(2000);
        assert!(msg(500, &long).1.chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn key_material_is_redacted_from_messages() {
        let body = r#"{"error":{"message":"bad key sk-abcdefghijklmnop1234 given","type":"x","param":null,"code":"400"}}"#;
        assert_eq!(msg(400, body).1, "bad key sk-*** given");
        assert_eq!(redact("sk-1 and sk-"), "sk-1 and sk-");
    }

    #[test]
    fn classification_follows_status_not_type() {
        let unavailable = |s: u16, m: &str| {
            GatewayError::Api {
                status: s,
                message: m.into(),
                retry_after: None,
            }
            .is_unavailable()
        };
        assert!(unavailable(503, "x"));
        assert!(unavailable(500, "db down"));
        assert!(unavailable(429, "slow down"));
        assert!(unavailable(400, "DB not connected"));
        assert!(!unavailable(400, "Team id = x already exists"));
        assert!(!unavailable(404, "not found"));
        assert!(!unavailable(
            500,
            "Regenerating Virtual Keys is an Enterprise feature"
        ));
        assert!(GatewayError::Transport("refused".into()).is_unavailable());
    }
}
