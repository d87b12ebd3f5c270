//! `millrace bench --rate-limit N/PERIOD`: the benchmark queue's rate limit.

use millrace::RateLimit;

/// Parses `N/PERIOD` (`100/1m`, `50/1s`, `1000/500ms`) into a validated rate limit,
/// partitioned by nothing.
pub(super) fn parse(value: &str) -> Result<RateLimit, String> {
    let (count, period) = value
        .split_once('/')
        .ok_or_else(|| format!("expected N/PERIOD such as 100/1m, not {value:?}"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("{count:?} is not a number of jobs"))?;
    let period = crate::admin::parse_duration(period.trim())?;
    let limit = RateLimit::per(count, period);
    limit.validate().map_err(|err| err.to_string())?;
    Ok(limit)
}

/// How a rate limit reads in the settings line.
pub(super) fn describe(limit: Option<&RateLimit>) -> String {
    limit.map_or_else(
        || "none".to_owned(),
        |l| format!("{}/{}", l.limit, crate::admin::human_duration(l.period)),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_count_and_period() {
        let limit = parse("100/1m").unwrap();
        assert_eq!((limit.limit, limit.period), (100, Duration::from_secs(60)));
        assert_eq!(
            parse("50/500ms").unwrap().period,
            Duration::from_millis(500)
        );
        assert!(parse("100").is_err());
        assert!(parse("0/1s").unwrap_err().contains("is 0"));
        assert!(parse("5/0s").is_err());
    }
}
