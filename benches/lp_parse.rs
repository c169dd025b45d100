//! Line-protocol parse throughput on TSBS "cpu-only"-shaped lines (10 tags, 10 fields).
//!
//! Run with `cargo bench --bench lp_parse` (release profile). Optional arguments after `--`:
//! `lines=N` (default 200000), `runs=N` (default 11), `batch=N` lines per body (default 5000,
//! the TSBS loader's batch size). The data is deterministic (a fixed-seed xorshift), the
//! `ParsedBatch` is reused across bodies as the server reuses it, and the reported figure is the
//! median and the best over the runs of lines/s and MB/s for one core (on a shared machine the
//! best run is the one least disturbed by other work). Two data sets: the real TSBS shape
//! with integer fields, and the same with float fields (a slower value parser).

use std::time::Instant;

use chronoshard::lp::{self, ParsedBatch};

const REGIONS: [&str; 9] = [
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
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x86", "x64"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];
const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];
/// Hosts in the simulated fleet (TSBS `--scale`).
const HOSTS: u64 = 4000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One TSBS cpu line for `host` at round `round`, appended to `out`.
fn push_line(out: &mut String, rng: &mut Rng, host: u64, round: u64, floats: bool) {
    use std::fmt::Write;
    let mut host_rng = Rng(host.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let region = host_rng.pick(&REGIONS);
    let _ = write!(
        out,
        "cpu,hostname=host_{host},region={region},datacenter={region}{dc},rack={rack},os={os},\
         arch={arch},team={team},service={service},service_version={version},\
         service_environment={env} ",
        dc = ["a", "b", "c"][host_rng.below(3) as usize],
        rack = host_rng.below(100),
        os = host_rng.pick(&OS),
        arch = host_rng.pick(&ARCH),
        team = host_rng.pick(&TEAM),
        service = host_rng.below(20),
        version = host_rng.below(2),
        env = host_rng.pick(&ENVIRONMENT),
    );
    for (i, field) in FIELDS.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        if floats {
            let v = rng.below(100_000_000) as f64 / 1_000_000.0;
            let _ = write!(out, "{sep}{field}={v}");
        } else {
            let _ = write!(out, "{sep}{field}={}i", rng.below(100));
        }
    }
    let ts = 1_451_606_400_000_000_000u64 + round * 10_000_000_000;
    let _ = writeln!(out, " {ts}");
}

/// `lines` lines split into bodies of `batch` lines.
fn generate(lines: u64, batch: u64, floats: bool) -> Vec<String> {
    let mut rng = Rng(0x5EED_1234_5678_9ABC);
    let mut bodies = Vec::new();
    let mut body = String::new();
    for n in 0..lines {
        push_line(&mut body, &mut rng, n % HOSTS, n / HOSTS, floats);
        if (n + 1) % batch == 0 {
            bodies.push(std::mem::take(&mut body));
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    bodies
}

fn arg(name: &str, default: u64) -> u64 {
    let prefix = format!("{name}=");
    std::env::args()
        .filter_map(|a| a.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .next()
        .unwrap_or(default)
}

/// (median, best) of the run times.
fn median_and_best(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn run(name: &str, bodies: &[String], runs: u64) {
    let bytes: usize = bodies.iter().map(String::len).sum();
    let mut parsed = ParsedBatch::default();
    let mut lines = 0usize;
    let mut rates = Vec::new();
    for _ in 0..runs {
        lines = 0;
        let start = Instant::now();
        for body in bodies {
            if let Err(e) = lp::parse(body.as_bytes(), &mut parsed) {
                eprintln!("lp_parse: the generated lines do not parse: {e}");
                std::process::exit(1);
            }
            lines += std::hint::black_box(&parsed).len();
        }
        rates.push(start.elapsed().as_secs_f64());
    }
    let (median, best) = median_and_best(rates);
    println!(
        "lp_parse {name}: {lines} lines, {:.1} MB in {} bodies: median {:.2} M lines/s, {:.0} MB/s; \
         best {:.2} M lines/s, {:.0} MB/s ({runs} runs)",
        bytes as f64 / 1e6,
        bodies.len(),
        lines as f64 / median / 1e6,
        bytes as f64 / median / 1e6,
        lines as f64 / best / 1e6,
        bytes as f64 / best / 1e6,
    );
}

fn main() {
    let lines = arg("lines", 200_000);
    let runs = arg("runs", 11).max(1);
    let batch = arg("batch", 5000).max(1);
    run(
        "tsbs-cpu (int fields)",
        &generate(lines, batch, false),
        runs,
    );
    run(
        "tsbs-cpu (float fields)",
        &generate(lines, batch, true),
        runs,
    );
}
