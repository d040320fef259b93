//! Prometheus' standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`,
//! `process_start_time_seconds`), read from `/proc` at scrape time.

/// What `/proc` says about this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
}

/// Reads this process' numbers; `None` where `/proc` is not mounted.
pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // SAFETY: sysconf only reads system constants.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let (ticks, page) = (u64::try_from(ticks).ok()?, u64::try_from(page).ok()?);
    parse(&stat, &system, ticks, page, open_fds)
}

/// Parses `/proc/self/stat` and the `btime` line of `/proc/stat`, with the
/// system's clock ticks per second and page size.
pub fn parse(stat: &str, system: &str, ticks: u64, page: u64, open_fds: u64) -> Option<Process> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // proc(5) numbers fields from 1, and `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, start, rss) = (field(14)?, field(15)?, field(22)?, field(24)?);
    let boot: u64 = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let ticks = ticks as f64;
    Some(Process {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss * page,
        start_time_seconds: boot as f64 + start as f64 / ticks,
        open_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of /proc/self/stat, with a command name that has a
    /// space and a parenthesis in it.
    const STAT: &str = "4242 (lumen obs) er) S 1 4242 4242 0 -1 4194560 1502 0 0 0 \
        250 75 0 0 20 0 9 0 123400 312000000 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17922 0 0 0 17 3 0 0 0 0 0\n";
    const SYSTEM: &str = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764950000\nprocesses 7\n";

    #[test]
    fn proc_stat_gives_cpu_memory_and_start_time() {
        assert_eq!(
            parse(STAT, SYSTEM, 100, 4096, 12),
            Some(Process {
                // utime 250 + stime 75 ticks at 100 per second.
                cpu_seconds: 3.25,
                // 2048 pages of 4 KiB.
                resident_bytes: 8_388_608,
                // Started 123400 ticks (1234 s) after boot.
                start_time_seconds: 1_764_951_234.0,
                open_fds: 12,
            })
        );
    }

    #[test]
    fn truncated_or_unfamiliar_input_is_none() {
        assert_eq!(parse("4242 (lumen) S 1 2", SYSTEM, 100, 4096, 0), None);
        assert_eq!(parse(STAT, "cpu 1 2 3\n", 100, 4096, 0), None);
        assert_eq!(parse("no parenthesis", SYSTEM, 100, 4096, 0), None);
    }

    #[test]
    fn this_process_is_read() {
        let p = read().expect("/proc is mounted");
        assert!(
            p.resident_bytes > 0 && p.open_fds >= 3 && p.start_time_seconds > 1e9,
            "{p:?}"
        );
    }
}
