use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::{Integration, Match, Rule};

fn integration(rate: Option<RateLimit>, rule_rate: Option<RateLimit>) -> Integration {
    let mut rule = Rule::new(&["*"], &["*"]).expect("valid globs");
    rule.rate = rule_rate;
    Integration {
        name: "erp".to_owned(),
        matcher: Match { ip: vec!["10.0.0.0/8".parse().unwrap()], ..Match::default() },
        rules: vec![rule],
        enabled: true,
        rate,
        web_routes: Vec::new(),
    }
}

#[test]
fn parse_units_and_default_burst() {
    assert_eq!(RateLimit::parse("10/s", None), Ok(RateLimit { count: 10, period: Period::Second, burst: 10 }));
    assert_eq!(RateLimit::parse("600/min", None).unwrap().burst, 10);
    assert_eq!(RateLimit::parse("10000/h", None).unwrap().burst, 3);
    assert_eq!(RateLimit::parse("1/h", None).unwrap().burst, 1);
    assert_eq!(RateLimit::parse("10/s", Some(50)).unwrap().burst, 50);
}

#[test]
fn parse_rejects_bad_rates() {
    assert_eq!(RateLimit::parse("10", None), Err(RateError::Shape("10".to_owned())));
    assert_eq!(RateLimit::parse("10/day", None), Err(RateError::Shape("10/day".to_owned())));
    assert_eq!(RateLimit::parse("0/s", None), Err(RateError::Count("0".to_owned())));
    assert_eq!(RateLimit::parse("-1/s", None), Err(RateError::Count("-1".to_owned())));
    assert_eq!(RateLimit::parse("1/s", Some(0)), Err(RateError::Count("0".to_owned())));
}

#[test]
fn bucket_empties_then_refills() {
    let limit = RateLimit::parse("2/s", Some(2)).unwrap();
    let erp = integration(Some(limit), None);
    let mut limiter = RateLimiter::new();
    let start = Instant::now();

    assert_eq!(limiter.check_and_take(&erp, Some(0), start), Ok(()));
    assert_eq!(limiter.check_and_take(&erp, Some(0), start), Ok(()));
    let refused = limiter.check_and_take(&erp, Some(0), start).unwrap_err();
    assert_eq!(refused.limit, "erp.rate = 2/s, burst 2");
    assert_eq!(refused.retry_after, Duration::from_millis(500));

    assert!(limiter.check_and_take(&erp, Some(0), start + Duration::from_millis(499)).is_err());
    assert_eq!(limiter.check_and_take(&erp, Some(0), start + Duration::from_millis(500)), Ok(()));
}

#[test]
fn rejected_call_takes_no_token() {
    let wide = RateLimit::parse("100/s", Some(100)).unwrap();
    let narrow = RateLimit::parse("1/min", Some(1)).unwrap();
    let erp = integration(Some(wide), Some(narrow));
    let mut limiter = RateLimiter::new();
    let start = Instant::now();

    assert_eq!(limiter.check_and_take(&erp, Some(0), start), Ok(()));
    let refused = limiter.check_and_take(&erp, Some(0), start).unwrap_err();
    assert_eq!(refused.limit, "erp.allow[0].rate = 1/min, burst 1");
    // The refused call took nothing from the integration's bucket: 99 left.
    for _ in 0..99 {
        assert_eq!(limiter.check_and_take(&erp, None, start), Ok(()));
    }
    assert!(limiter.check_and_take(&erp, None, start).is_err());
}

#[test]
fn changed_limit_starts_full() {
    let mut erp = integration(Some(RateLimit::parse("1/h", Some(1)).unwrap()), None);
    let mut limiter = RateLimiter::new();
    let start = Instant::now();
    assert_eq!(limiter.check_and_take(&erp, None, start), Ok(()));
    assert!(limiter.check_and_take(&erp, None, start).is_err());

    erp.rate = Some(RateLimit::parse("2/h", Some(1)).unwrap());
    assert_eq!(limiter.check_and_take(&erp, None, start), Ok(()));
}

proptest! {
    /// Over any window [a, b] of the calls' times, the allowed calls are at
    /// most rate * (b - a) + burst.
    #[test]
    fn never_more_than_rate_times_t_plus_burst(
        count in 1u32..50,
        period in prop_oneof![Just("s"), Just("min")],
        burst in 1u32..20,
        gaps in proptest::collection::vec(0u64..200_000_000, 1..300),
    ) {
        let limit = RateLimit::parse(&format!("{count}/{period}"), Some(burst)).unwrap();
        let erp = integration(Some(limit), None);
        let mut limiter = RateLimiter::new();
        let start = Instant::now();

        let mut elapsed = 0u64;
        let mut allowed_at = Vec::new();
        for gap in gaps {
            elapsed += gap;
            if limiter.check_and_take(&erp, None, start + Duration::from_nanos(elapsed)).is_ok() {
                allowed_at.push(elapsed);
            }
        }

        let period_nanos = u128::from(limit.period.seconds()) * 1_000_000_000;
        for (i, &from) in allowed_at.iter().enumerate() {
            for (j, &to) in allowed_at.iter().enumerate().skip(i) {
                let calls = (j - i + 1) as u128;
                let bound = u128::from(to - from) * u128::from(count) / period_nanos + u128::from(burst);
                prop_assert!(calls <= bound, "{calls} calls in {} ns, bound {bound}", to - from);
            }
        }
    }
}

#[test]
fn buckets_report_their_levels() {
    let limit = RateLimit::parse("1/min", Some(3)).unwrap();
    let erp = integration(Some(limit), None);
    let mut limiter = RateLimiter::new();
    let start = Instant::now();
    assert!(limiter.buckets(start).is_empty());

    limiter.check_and_take(&erp, Some(0), start).unwrap();
    let levels = limiter.buckets(start);
    assert_eq!(levels.len(), 1);
    assert_eq!(levels[0].limit, "erp.rate = 1/min, burst 3");
    assert_eq!(levels[0].available, 2);
    assert_eq!(levels[0].burst, 3);
    assert_eq!(limiter.buckets(start + Duration::from_secs(60))[0].available, 3);
}
