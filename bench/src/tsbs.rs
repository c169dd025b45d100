//! TSBS "cpu-only" data in InfluxDB line protocol, generated deterministically from a seed.
//!
//! The shape follows TSBS's `cpu-only` use case: measurement `cpu`, ten tags per host
//! (`hostname=host_N` first, then region, datacenter, rack, os, arch, team, service,
//! service_version, service_environment) and the ten `usage_*` fields, here as int64 values
//! (`i` suffix) that each walk randomly within 0..=100. Rows are time-major, as TSBS emits them:
//! every host at `start`, then every host at `start + interval`, and so on until `rows` rows.
//!
//! Each host draws its tags and its walk from its own small PRNG seeded by `(seed, host index)`,
//! so host N looks the same whatever the scale, and the output does not depend on how callers
//! cut it into chunks. The hot path formats with byte copies and a small digit writer, never
//! `format!`: [`Generator::fill`] appends the next lines to a caller's reused buffer.

use thiserror::Error;

/// TSBS's regions, each with its three datacenters `<region>a/b/c`.
pub const REGIONS: [&str; 9] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];
const DATACENTER_SUFFIXES: [&str; 3] = ["a", "b", "c"];
const OSES: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHES: [&str; 2] = ["x64", "x86"];
const TEAMS: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "test"];
const RACKS: u64 = 100;
const SERVICES: u64 = 20;
const SERVICE_VERSIONS: u64 = 2;

/// The ten fields, in TSBS order, each with its `=`.
pub const FIELD_KEYS: [&[u8]; 10] = [
    b"usage_user=",
    b"usage_system=",
    b"usage_idle=",
    b"usage_nice=",
    b"usage_iowait=",
    b"usage_irq=",
    b"usage_softirq=",
    b"usage_steal=",
    b"usage_guest=",
    b"usage_guest_nice=",
];
/// Largest field value; the walks stay within `0..=MAX_VALUE`.
pub const MAX_VALUE: u8 = 100;
/// Each walk step moves a field by at most this much.
pub const MAX_STEP: i8 = 3;

/// TSBS's default start.
pub const DEFAULT_START: &str = "2016-01-01T00:00:00Z";
/// [`DEFAULT_START`] in nanoseconds since the Unix epoch.
#[cfg(test)]
pub const DEFAULT_START_NS: i64 = 1_451_606_400_000_000_000;
const NS_PER_S: i64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;

/// Invalid generator settings.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TsbsError {
    #[error("bad --start {value:?}: {reason} (want RFC 3339 like 2016-01-01T00:00:00Z, or integer nanoseconds since the epoch)")]
    Start { value: String, reason: &'static str },
    #[error("bad --scale {0}: must be between 1 and {max}", max = MAX_SCALE)]
    Scale(u64),
    #[error("bad --interval-s {0}: must be between 1 and 1000000000")]
    Interval(u64),
    #[error("{rows} rows from {start_ns} ns every {interval_ns} ns runs past the year 2262 (i64 nanoseconds)")]
    TimeOverflow {
        rows: u64,
        start_ns: i64,
        interval_ns: i64,
    },
}

/// Upper bound of `--scale` (hosts).
pub const MAX_SCALE: u64 = 100_000_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsbsConfig {
    /// Number of hosts.
    pub scale: u64,
    pub seed: u64,
    /// Timestamp of the first rows, in ns since the epoch.
    pub start_ns: i64,
    /// Time between two rows of one host, in ns.
    pub interval_ns: i64,
    /// Total rows (lines) to generate.
    pub rows: u64,
}

impl TsbsConfig {
    /// Validates `scale` and `interval_s`; `rows` defaults to one day's worth for the scale.
    pub fn new(
        scale: u64,
        seed: u64,
        start_ns: i64,
        interval_s: u64,
        rows: Option<u64>,
    ) -> Result<Self, TsbsError> {
        if !(1..=MAX_SCALE).contains(&scale) {
            return Err(TsbsError::Scale(scale));
        }
        if !(1..=1_000_000_000).contains(&interval_s) {
            return Err(TsbsError::Interval(interval_s));
        }
        let per_day = SECONDS_PER_DAY.div_ceil(interval_s);
        let cfg = Self {
            scale,
            seed,
            start_ns,
            interval_ns: i64::try_from(interval_s).map_err(|_| TsbsError::Interval(interval_s))?
                * NS_PER_S,
            rows: rows.unwrap_or(scale.saturating_mul(per_day)),
        };
        cfg.last_timestamp()?;
        Ok(cfg)
    }

    /// Timestamp of the last row, or an error if it does not fit in i64 nanoseconds.
    pub fn last_timestamp(&self) -> Result<i64, TsbsError> {
        let overflow = || TsbsError::TimeOverflow {
            rows: self.rows,
            start_ns: self.start_ns,
            interval_ns: self.interval_ns,
        };
        let steps = self.rows.saturating_sub(1) / self.scale.max(1);
        i64::try_from(steps)
            .ok()
            .and_then(|s| s.checked_mul(self.interval_ns))
            .and_then(|d| d.checked_add(self.start_ns))
            .ok_or_else(overflow)
    }
}

/// Parses `--start`: integer nanoseconds since the epoch, or an RFC 3339 timestamp.
pub fn parse_start(value: &str) -> Result<i64, TsbsError> {
    let fail = |reason| TsbsError::Start {
        value: value.to_owned(),
        reason,
    };
    let v = value.trim();
    let digits = v.strip_prefix('-').unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse()
            .map_err(|_| fail("out of range for i64 nanoseconds"));
    }
    parse_rfc3339(v).map_err(fail)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` to ns since the epoch.
fn parse_rfc3339(s: &str) -> Result<i64, &'static str> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, &'static str> {
        let part = b.get(from..from + len).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err("expected digits");
        }
        Ok(part
            .iter()
            .fold(0, |acc, &d| acc * 10 + i64::from(d - b'0')))
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c))
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return Err("not RFC 3339");
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day");
    }
    let (frac_ns, mut i) = parse_fraction(b, 19)?;
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) if b.get(i + 3) == Some(&b':') => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            i += 6;
            if h > 23 || m > 59 {
                return Err("bad UTC offset");
            }
            (h * 3600 + m * 60) * if sign == b'-' { -1 } else { 1 }
        }
        _ => return Err("missing UTC offset (Z or +HH:MM)"),
    };
    if i != b.len() {
        return Err("trailing characters");
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    (secs - offset_s)
        .checked_mul(NS_PER_S)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or("out of range for i64 nanoseconds")
}

/// An optional `.digits` at `at`: its value in ns (digits past the ninth are dropped) and the end.
fn parse_fraction(b: &[u8], at: usize) -> Result<(i64, usize), &'static str> {
    if b.get(at) != Some(&b'.') {
        return Ok((0, at));
    }
    let digits = b[at + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err("empty fraction of a second");
    }
    let mut ns = 0;
    for k in 0..9 {
        let d = b
            .get(at + 1 + k)
            .filter(|_| k < digits)
            .map_or(0, |&c| c - b'0');
        ns = ns * 10 + i64::from(d);
    }
    Ok((ns, at + 1 + digits))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// SplitMix64: tiny, fast, and good enough for benchmark data and query parameters.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    fn for_host(seed: u64, host: u64) -> Self {
        let mut mix = Rng(seed ^ 0x5eed_0fc0_ffee);
        let a = mix.next_u64();
        Rng(a ^ host.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    /// A generator for query `index` of query type `kind` (parameters independent of the
    /// order in which clients run the queries).
    pub(crate) fn for_query(seed: u64, kind: u64, index: u64) -> Self {
        let mut mix = Rng(seed ^ 0x7175_6572_7973);
        let a = mix.next_u64();
        let mut rng = Rng(a ^ kind.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let b = rng.next_u64();
        Rng(b ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` up to a modulo bias of at most n / 2^64 (0 for `n` = 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One host: its line prefix (measurement, tags, space) and its walking field values.
#[derive(Debug, Clone)]
struct Host {
    prefix: Box<[u8]>,
    values: [u8; 10],
    rng: Rng,
}

impl Host {
    fn new(seed: u64, index: u64) -> Self {
        let mut rng = Rng::for_host(seed, index);
        let region = rng.pick(&REGIONS);
        let datacenter = format!("{region}{}", rng.pick(&DATACENTER_SUFFIXES));
        let tags = [
            ("hostname", format!("host_{index}")),
            ("region", region.to_owned()),
            ("datacenter", datacenter),
            ("rack", rng.below(RACKS).to_string()),
            ("os", rng.pick(&OSES).to_owned()),
            ("arch", rng.pick(&ARCHES).to_owned()),
            ("team", rng.pick(&TEAMS).to_owned()),
            ("service", rng.below(SERVICES).to_string()),
            ("service_version", rng.below(SERVICE_VERSIONS).to_string()),
            ("service_environment", rng.pick(&ENVIRONMENTS).to_owned()),
        ];
        let mut prefix = String::from("cpu");
        for (key, value) in tags {
            prefix.push(',');
            prefix.push_str(key);
            prefix.push('=');
            prefix.push_str(&value);
        }
        prefix.push(' ');
        let values = std::array::from_fn(|_| rng.below(u64::from(MAX_VALUE) + 1) as u8);
        Self {
            prefix: prefix.into_bytes().into_boxed_slice(),
            values,
            rng,
        }
    }

    /// Moves every field by a step in `-MAX_STEP..=MAX_STEP`, clamped to `0..=MAX_VALUE`.
    fn step(&mut self) {
        let bits = self.rng.next_u64();
        let span = 2 * MAX_STEP as u64 + 1;
        for (k, v) in self.values.iter_mut().enumerate() {
            let delta = ((bits >> (6 * k)) & 63) % span;
            let next = i16::from(*v) + delta as i16 - i16::from(MAX_STEP);
            *v = next.clamp(0, i16::from(MAX_VALUE)) as u8;
        }
    }

    fn write_line(&self, buf: &mut Vec<u8>, ts_text: &[u8]) {
        buf.extend_from_slice(&self.prefix);
        for (k, (key, &v)) in FIELD_KEYS.iter().zip(&self.values).enumerate() {
            if k > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(key);
            push_small(buf, v);
            buf.push(b'i');
        }
        buf.push(b' ');
        buf.extend_from_slice(ts_text);
        buf.push(b'\n');
    }
}

/// Appends `v` (0..=255) in decimal.
fn push_small(buf: &mut Vec<u8>, v: u8) {
    if v >= 100 {
        buf.extend_from_slice(&[b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10]);
    } else if v >= 10 {
        buf.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
    } else {
        buf.push(b'0' + v);
    }
}

/// Writes `v` in decimal into `out`, returning the used length.
fn format_i64(v: i64, out: &mut [u8; 20]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    if v < 0 {
        out[0] = b'-';
        at = 1;
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        out[at + i] = *d;
    }
    at + len
}

/// Produces the rows of a [`TsbsConfig`], in order, a chunk at a time.
#[derive(Debug, Clone)]
pub struct Generator {
    hosts: Vec<Host>,
    interval_ns: i64,
    /// Host of the next row.
    next_host: usize,
    /// Timestamp of the next row.
    ts_ns: i64,
    ts_text: [u8; 20],
    ts_len: usize,
    remaining: u64,
    /// True until the first timestamp is done (the initial values are emitted unstepped).
    first_round: bool,
}

impl Generator {
    /// Validates the timestamps and builds every host's tags.
    pub fn new(cfg: &TsbsConfig) -> Result<Self, TsbsError> {
        cfg.last_timestamp()?;
        let hosts_needed = cfg.scale.min(cfg.rows);
        let mut generator = Self {
            hosts: (0..hosts_needed).map(|i| Host::new(cfg.seed, i)).collect(),
            interval_ns: cfg.interval_ns,
            next_host: 0,
            ts_ns: cfg.start_ns,
            ts_text: [0; 20],
            ts_len: 0,
            remaining: cfg.rows,
            first_round: true,
        };
        generator.ts_len = format_i64(generator.ts_ns, &mut generator.ts_text);
        Ok(generator)
    }

    /// Rows not generated yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Appends up to `max_lines` next lines (each ending in `\n`) to `buf`; returns how many.
    /// Returns 0 only once everything has been generated (or when `max_lines` is 0).
    pub fn fill(&mut self, buf: &mut Vec<u8>, max_lines: usize) -> usize {
        let lines = usize::try_from(self.remaining).map_or(max_lines, |r| r.min(max_lines));
        if let Some(host) = self.hosts.first() {
            buf.reserve(lines.min(1 << 16) * (host.prefix.len() + 200));
        }
        for _ in 0..lines {
            let host = &mut self.hosts[self.next_host];
            if !self.first_round {
                host.step();
            }
            host.write_line(buf, &self.ts_text[..self.ts_len]);
            self.next_host += 1;
            if self.next_host == self.hosts.len() {
                self.next_host = 0;
                self.first_round = false;
                // Cannot overflow: `TsbsConfig::last_timestamp` checked the last one.
                self.ts_ns = self.ts_ns.saturating_add(self.interval_ns);
                self.ts_len = format_i64(self.ts_ns, &mut self.ts_text);
            }
        }
        self.remaining -= lines as u64;
        lines
    }
}

/// One line at a time, without its `\n` (convenient, not fast: use [`Generator::fill`]).
impl Iterator for Generator {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        if self.fill(&mut buf, 1) == 0 {
            return None;
        }
        buf.pop();
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scale: u64, seed: u64, rows: u64) -> TsbsConfig {
        TsbsConfig::new(scale, seed, DEFAULT_START_NS, 10, Some(rows)).expect("config")
    }

    fn lines(cfg: &TsbsConfig) -> Vec<String> {
        Generator::new(cfg).expect("generator").collect()
    }

    /// (tags, field values, timestamp) of one line.
    fn split(line: &str) -> (&str, Vec<i64>, i64) {
        let mut parts = line.split(' ');
        let (tags, fields, ts) = (parts.next(), parts.next(), parts.next());
        assert!(parts.next().is_none(), "three parts: {line}");
        let fields = fields.expect("fields").split(',').map(|kv| {
            let (_, v) = kv.split_once('=').expect("key=value");
            v.strip_suffix('i').expect("i suffix").parse().expect("int")
        });
        let ts = ts.expect("timestamp").parse().expect("ns");
        (tags.expect("tags"), fields.collect(), ts)
    }

    #[test]
    fn exact_format_of_the_first_lines() {
        let got = lines(&cfg(2, 1, 4));
        let want = [
            "cpu,hostname=host_0,region=us-west-2,datacenter=us-west-2c,rack=5,os=Ubuntu15.10,arch=x64,team=NYC,service=9,service_version=1,service_environment=production usage_user=61i,usage_system=11i,usage_idle=59i,usage_nice=85i,usage_iowait=94i,usage_irq=64i,usage_softirq=25i,usage_steal=77i,usage_guest=81i,usage_guest_nice=82i 1451606400000000000",
            "cpu,hostname=host_1,region=us-west-2,datacenter=us-west-2c,rack=76,os=Ubuntu15.10,arch=x86,team=CHI,service=1,service_version=1,service_environment=test usage_user=48i,usage_system=45i,usage_idle=77i,usage_nice=33i,usage_iowait=50i,usage_irq=70i,usage_softirq=17i,usage_steal=66i,usage_guest=6i,usage_guest_nice=51i 1451606400000000000",
            "cpu,hostname=host_0,region=us-west-2,datacenter=us-west-2c,rack=5,os=Ubuntu15.10,arch=x64,team=NYC,service=9,service_version=1,service_environment=production usage_user=60i,usage_system=8i,usage_idle=62i,usage_nice=82i,usage_iowait=94i,usage_irq=63i,usage_softirq=28i,usage_steal=80i,usage_guest=84i,usage_guest_nice=79i 1451606410000000000",
            "cpu,hostname=host_1,region=us-west-2,datacenter=us-west-2c,rack=76,os=Ubuntu15.10,arch=x86,team=CHI,service=1,service_version=1,service_environment=test usage_user=48i,usage_system=44i,usage_idle=76i,usage_nice=30i,usage_iowait=50i,usage_irq=70i,usage_softirq=14i,usage_steal=64i,usage_guest=4i,usage_guest_nice=53i 1451606410000000000",
        ];
        assert_eq!(got, want);
        let (tags0, _, _) = split(&got[0]);
        assert!(
            got[1].starts_with("cpu,hostname=host_1,region="),
            "{}",
            got[1]
        );
        assert!(
            got[2].starts_with(&format!("{tags0} usage_user=")),
            "{}",
            got[2]
        );
        assert!(got[2].ends_with(" 1451606410000000000"), "{}", got[2]);
        let keys: Vec<&str> = got[3]
            .split(' ')
            .nth(1)
            .expect("fields")
            .split(',')
            .map(|kv| kv.split('=').next().unwrap_or(""))
            .collect();
        let want_keys: Vec<String> = FIELD_KEYS
            .iter()
            .map(|k| String::from_utf8_lossy(&k[..k.len() - 1]).into_owned())
            .collect();
        assert_eq!(keys, want_keys);
        let tag_keys: Vec<&str> = split(&got[3])
            .0
            .split(',')
            .skip(1)
            .map(|kv| kv.split('=').next().unwrap_or(""))
            .collect();
        assert_eq!(
            tag_keys,
            [
                "hostname",
                "region",
                "datacenter",
                "rack",
                "os",
                "arch",
                "team",
                "service",
                "service_version",
                "service_environment"
            ]
        );
    }

    #[test]
    fn deterministic_for_a_seed_and_independent_of_chunking() {
        let c = cfg(7, 42, 500);
        assert_eq!(lines(&c), lines(&c));
        assert_ne!(lines(&c), lines(&cfg(7, 43, 500)));
        let mut whole = Vec::new();
        Generator::new(&c).expect("gen").fill(&mut whole, 10_000);
        let mut chunked = Vec::new();
        let mut generator = Generator::new(&c).expect("gen");
        let mut n = 0;
        for size in [1usize, 2, 3, 5, 8, 13].iter().cycle() {
            let got = generator.fill(&mut chunked, *size);
            if got == 0 {
                break;
            }
            n += got;
        }
        assert_eq!((n, generator.remaining()), (500, 0));
        assert_eq!(whole, chunked);
        let small_scale: Vec<String> = lines(&cfg(3, 42, 3));
        assert_eq!(
            small_scale[..],
            lines(&c)[..3],
            "host N does not depend on the scale"
        );
    }

    #[test]
    fn tags_stable_values_in_range_time_major() {
        let scale = 25;
        let c = cfg(scale, 9, scale * 40 + 7);
        let all = lines(&c);
        assert_eq!(all.len() as u64, c.rows);
        let mut tags_of = std::collections::HashMap::new();
        let mut prev: Vec<Option<Vec<i64>>> = vec![None; scale as usize];
        for (i, line) in all.iter().enumerate() {
            let (tags, values, ts) = split(line);
            let (step, host) = (i as u64 / scale, (i as u64 % scale) as usize);
            assert_eq!(
                ts,
                DEFAULT_START_NS + step as i64 * 10 * NS_PER_S,
                "time-major"
            );
            assert!(
                tags.starts_with(&format!("cpu,hostname=host_{host},")),
                "{line}"
            );
            assert_eq!(*tags_of.entry(host).or_insert(tags), tags, "tags stable");
            assert!(
                values
                    .iter()
                    .all(|v| (0..=i64::from(MAX_VALUE)).contains(v)),
                "{line}"
            );
            if let Some(p) = &prev[host] {
                let moved = p
                    .iter()
                    .zip(&values)
                    .all(|(a, b)| (a - b).abs() <= i64::from(MAX_STEP));
                assert!(moved, "bounded walk step at {line}");
            }
            prev[host] = Some(values);
        }
        let distinct: std::collections::HashSet<_> = tags_of.values().collect();
        assert_eq!(distinct.len(), scale as usize);
    }

    #[test]
    fn tag_values_come_from_the_tsbs_lists() {
        for line in lines(&cfg(300, 5, 300)) {
            let (tags, _, _) = split(&line);
            let kv: std::collections::HashMap<&str, &str> = tags
                .split(',')
                .skip(1)
                .filter_map(|t| t.split_once('='))
                .collect();
            assert!(REGIONS.contains(&kv["region"]));
            let dc = kv["datacenter"]
                .strip_prefix(kv["region"])
                .expect("datacenter of region");
            assert!(DATACENTER_SUFFIXES.contains(&dc));
            assert!(kv["rack"].parse::<u64>().is_ok_and(|r| r < RACKS));
            assert!(OSES.contains(&kv["os"]) && ARCHES.contains(&kv["arch"]));
            assert!(
                TEAMS.contains(&kv["team"]) && ENVIRONMENTS.contains(&kv["service_environment"])
            );
            assert!(kv["service"].parse::<u64>().is_ok_and(|s| s < SERVICES));
            assert!(kv["service_version"]
                .parse::<u64>()
                .is_ok_and(|s| s < SERVICE_VERSIONS));
        }
    }

    #[test]
    fn config_defaults_and_limits() {
        let c = TsbsConfig::new(100, 1, DEFAULT_START_NS, 10, None).expect("defaults");
        assert_eq!(c.rows, 100 * 8640);
        assert_eq!(c.interval_ns, 10 * NS_PER_S);
        assert_eq!(TsbsConfig::new(0, 1, 0, 10, None), Err(TsbsError::Scale(0)));
        assert_eq!(
            TsbsConfig::new(1, 1, 0, 0, None),
            Err(TsbsError::Interval(0))
        );
        let late = TsbsConfig::new(1, 1, i64::MAX - 5 * NS_PER_S, 10, Some(2));
        assert!(matches!(late, Err(TsbsError::TimeOverflow { .. })));
        assert!(TsbsConfig::new(1, 1, i64::MAX, 10, Some(1)).is_ok());
        let mut g = Generator::new(&cfg(3, 1, 0)).expect("empty");
        assert_eq!(g.fill(&mut Vec::new(), 10), 0);
    }

    #[test]
    fn start_parsing() {
        assert_eq!(parse_start("2016-01-01T00:00:00Z"), Ok(DEFAULT_START_NS));
        assert_eq!(parse_start("1451606400000000000"), Ok(DEFAULT_START_NS));
        assert_eq!(parse_start("-5"), Ok(-5));
        assert_eq!(parse_start("1970-01-01T00:00:00.5Z"), Ok(500_000_000));
        assert_eq!(parse_start("1970-01-01 01:00:00.000000001+01:00"), Ok(1));
        assert_eq!(parse_start("1969-12-31T23:59:59.9999999999z"), Ok(-1));
        assert_eq!(
            parse_start("2000-02-29T12:00:00-00:30"),
            Ok(951_827_400 * NS_PER_S)
        );
        for bad in [
            "",
            "2016-01-01",
            "2016-01-01T00:00:00",
            "2015-02-29T00:00:00Z",
            "2016-13-01T00:00:00Z",
            "2016-01-01T24:00:00Z",
            "2016-01-01T00:00:00.Z",
            "2016-01-01T00:00:00Zx",
            "99999999999999999999",
            "x",
        ] {
            assert!(parse_start(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn integer_formatting() {
        let mut out = [0u8; 20];
        for v in [0, 7, 10, 99, 100, -1, i64::MAX, i64::MIN, DEFAULT_START_NS] {
            let n = format_i64(v, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]), Ok(v.to_string().as_str()));
        }
        for v in 0..=255u8 {
            let mut buf = Vec::new();
            push_small(&mut buf, v);
            assert_eq!(buf, v.to_string().into_bytes());
        }
    }
}
