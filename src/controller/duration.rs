//! The gateway's duration strings (`30s`, `5m` = minutes, `12h`, `30d`, `2w`, `1mo`), for scheduling rotations.
use std::time::Duration;

/// Parses a gateway duration; a month counts as 30 days. `None` for anything the CRD pattern would refuse.
pub fn parse(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => 30 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_gateway() {
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1m"), Some(Duration::from_secs(60)), "m is minutes");
        assert_eq!(parse("1mo"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("24h"), parse("1d"));
        assert_eq!(parse("1month"), None);
        assert_eq!(parse("d"), None);
        assert_eq!(parse(""), None);
    }
}
