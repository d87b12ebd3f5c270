use jiff::Timestamp;

/// A client id like River's: the host name with dots made `_`, cut to 60 bytes, then `_` and
/// the UTC start time as `2006_01_02T15_04_05_000000`.
pub(crate) fn default_client_id(now: Timestamp) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut host: String = host
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .collect();
    while host.len() > 60 {
        host.pop();
    }
    format!("{host}_{}", now.strftime("%Y_%m_%dT%H_%M_%S_%6f"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_river() {
        let id = default_client_id("2024-03-04T05:06:07.123456Z".parse().unwrap());
        assert!(id.ends_with("_2024_03_04T05_06_07_123456"), "{id}");
        assert!(!id.contains('.'));
        assert!(id.len() <= 100);
    }
}
