//! When a key rotates: on request (a new `routero.ai/rotate` value), on schedule (`rotation.every`), or when it
//! enters the last third of its `duration`. Pure, so it is tested without a cluster or a clock.
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// What the schedule depends on, read from the spec, the workload Secret and the gateway.
#[derive(Clone, Debug, Default)]
pub struct Plan<'a> {
    /// `rotation.every`.
    pub every: Option<Duration>,
    /// `duration`: each key's lifetime.
    pub lifetime: Option<Duration>,
    /// When the key in the Secret was issued or rotated.
    pub rotated_at: Option<Timestamp>,
    /// When the gateway expires the key.
    pub expires: Option<Timestamp>,
    /// The `routero.ai/rotate` annotation on the RouteroKey.
    pub requested: Option<&'a str>,
    /// The value of it already acted on.
    pub handled: Option<&'a str>,
}

impl Plan<'_> {
    /// The next scheduled rotation.
    pub fn scheduled(&self) -> Option<Timestamp> {
        self.rotated_at?
            .checked_add(SignedDuration::try_from(self.every?).ok()?)
            .ok()
    }

    /// The renewal of an expiring key: at the start of the last third of its lifetime.
    pub fn renewal(&self) -> Option<Timestamp> {
        self.expires?
            .checked_sub(SignedDuration::try_from(self.lifetime? / 3).ok()?)
            .ok()
    }

    /// The earlier of the two, for status.
    pub fn next(&self) -> Option<Timestamp> {
        [self.scheduled(), self.renewal()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Why the key rotates now, and the annotation value the rotation answers; `None` when it does not.
    pub fn due(&self, now: Timestamp) -> Option<(&'static str, Option<String>)> {
        let trigger = self.requested.map(str::to_owned);
        if self.requested.is_some() && self.requested != self.handled {
            return Some((
                "requested through the routero.ai/rotate annotation",
                trigger,
            ));
        }
        if self.scheduled().is_some_and(|t| t <= now) {
            return Some(("scheduled by rotation.every", trigger));
        }
        if self.renewal().is_some_and(|t| t <= now) {
            return Some(("the key enters the last third of its duration", trigger));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_new_annotation_value_rotates_once() {
        let plan = Plan {
            requested: Some("2026-11-28"),
            handled: Some("2026-11-01"),
            ..Plan::default()
        };
        assert_eq!(
            plan.due(at("2026-11-28T00:00:00Z")).map(|d| d.1),
            Some(Some("2026-11-28".to_owned()))
        );
        let handled = Plan {
            handled: Some("2026-11-28"),
            ..plan
        };
        assert_eq!(handled.due(at("2026-11-28T00:00:00Z")), None);
    }

    #[test]
    fn scheduled_rotation_follows_the_last_one() {
        let plan = Plan {
            every: Some(Duration::from_secs(30 * 86_400)),
            rotated_at: Some(at("2026-11-01T00:00:00Z")),
            ..Plan::default()
        };
        assert_eq!(plan.scheduled(), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(plan.due(at("2026-11-30T23:59:59Z")), None);
        assert!(plan.due(at("2026-12-01T00:00:00Z")).is_some());
    }

    #[test]
    fn expiring_keys_renew_in_the_last_third() {
        let plan = Plan {
            lifetime: Some(Duration::from_secs(90 * 86_400)),
            expires: Some(at("2027-03-01T00:00:00Z")),
            ..Plan::default()
        };
        assert_eq!(plan.renewal(), Some(at("2027-01-30T00:00:00Z")));
        assert_eq!(plan.due(at("2027-01-29T23:59:59Z")), None);
        assert_eq!(
            plan.due(at("2027-01-30T00:00:00Z")).map(|d| d.0),
            Some("the key enters the last third of its duration")
        );
        assert_eq!(plan.next(), plan.renewal());
    }

    #[test]
    fn nothing_to_do_without_a_schedule() {
        let plan = Plan {
            rotated_at: Some(at("2020-01-01T00:00:00Z")),
            expires: None,
            ..Plan::default()
        };
        assert_eq!(plan.due(at("2030-01-01T00:00:00Z")), None);
        assert_eq!(plan.next(), None);
    }
}
