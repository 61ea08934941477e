//! How the `dfs` command shows quantities to people: times as local dates with how far
//! away they are ("2026-12-08 03:04 (in 9 h 59 min)"), sizes in binary units (humansize),
//! and the switch between that text and JSON for scripts (`--json`).
//!
//! Owns: formats. Must not fetch anything.

/// A size in bytes, for people: "5.00 KiB", "1.21 GiB", "512 B" (the one the progress
/// bars of `dfs-mount` use too).
pub use dfs_client::progress::size;

/// A span of seconds, for people, at most two units: "9 h 59 min", "3 min 5 s", "2 d 4 h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// Unix time `at` as a date in the local time zone: "2026-12-08 03:04".
pub fn local_date(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| format!("unix time {at}"))
}

/// Unix time `at` as a local date and how far it is from `now`:
/// "2026-12-08 03:04 (in 9 h 59 min)" or "2026-12-07 17:00 (1 h 5 min ago)".
pub fn when(at: i64, now: i64) -> String {
    let date = local_date(at);
    if at >= now {
        format!("{date} (in {})", duration((at - now) as u64))
    } else {
        format!("{date} ({} ago)", duration((now - at) as u64))
    }
}

/// Prints `value` as one JSON document on stdout.
pub fn json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_read_these() {
        assert_eq!(duration(35_940), "9 h 59 min");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(120), "2 min");
        assert_eq!(duration(7), "7 s");
        assert_eq!(duration(3 * 86_400 + 7200), "3 d 2 h");
        assert_eq!(size(5 * 1024), "5 KiB");
        assert!(when(1_000_000, 1_000_000 - 60).ends_with("(in 1 min)"));
        assert!(when(1_000_000, 1_000_000 + 3700).ends_with("(1 h 1 min ago)"));
    }
}
