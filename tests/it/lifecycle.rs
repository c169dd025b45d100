//! Start, configuration and shutdown of the real binary.

use std::process::Command;
use std::time::Duration;

use crate::common::{binary, get, signal, temp_dir, Reader, Server};

#[test]
fn sigterm_exits_zero_and_late_requests_get_503() {
    let mut s = Server::start("[http]\nshutdown_grace_ms = 5000\n", 2);
    assert_eq!(get(&s, "/api/v1/ping").status, 200);
    // A request whose head is half sent when the signal comes in is answered 503.
    let mut c = Reader::new(s.connect());
    c.send(b"GET /api/v1/ping HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(100));
    signal(&s.child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"Host: t\r\n\r\n");
    let r = c.read(false).expect("an answer");
    r.assert_error(503);
    assert_eq!(r.header("connection"), Some("close"));
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        s.log_text()
    );
    assert!(
        s.log_text().contains("shutting down gracefully"),
        "{}",
        s.log_text()
    );
}

#[test]
fn sigint_with_idle_connections_exits_zero() {
    let mut s = Server::start("", 2);
    let idle: Vec<_> = (0..5).map(|_| s.connect()).collect();
    signal(&s.child, libc::SIGINT);
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    drop(idle);
}

#[test]
fn first_start_writes_config_and_data_dir() {
    let mut s = Server::start_in(temp_dir(), None, 1, &[], &[]);
    let data = s.dir.path().join("data");
    let config = data.join("chronoshard.toml");
    assert!(
        s.log_text().contains("(written with defaults)"),
        "{}",
        s.log_text()
    );
    assert!(s.terminate().success());
    let text = std::fs::read_to_string(&config).expect("config written on first start");
    assert!(text.contains("wal_mode = \"sync\""), "{text}");
    // The second start finds and uses it.
    let dir = std::mem::replace(&mut s.dir, temp_dir());
    let s2 = Server::start_in(dir, None, 1, &[], &[]);
    assert!(
        s2.log_text().contains(&config.display().to_string()),
        "{}",
        s2.log_text()
    );
    assert!(!s2.log_text().contains("(written with defaults)"));
}

#[test]
fn env_twin_sets_a_flag_and_flag_beats_env() {
    let dir = temp_dir();
    let out = Command::new(binary())
        .args(["serve", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CHRONOSHARD_WAL_MODE", "bogus")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "wal_mode = \"interval\"\n").expect("write");
    let mut s = Server::start_in(
        dir,
        Some(&config),
        1,
        &[],
        &[("CHRONOSHARD_WAL_MODE", "off")],
    );
    assert!(
        s.log_text().contains("WAL off"),
        "env beats file: {}",
        s.log_text()
    );
    assert!(s.terminate().success());
    let dir = temp_dir();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").expect("write");
    let s = Server::start_in(
        dir,
        Some(&config),
        1,
        &["--wal-mode", "interval"],
        &[("CHRONOSHARD_WAL_MODE", "bogus")],
    );
    assert!(
        s.log_text().contains("WAL interval"),
        "flag beats env: {}",
        s.log_text()
    );
}

#[test]
fn port_in_use_fails_with_one_line() {
    let s = Server::start("", 1);
    let dir = temp_dir();
    let out = Command::new(binary())
        .args(["serve", "--shards", "1", "--http-addr", &s.addr.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("chronoshard:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn data_dir_in_use_is_refused() {
    let s = Server::start("", 1);
    let out = Command::new(binary())
        .args(["serve", "--shards", "1", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(s.dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
}

#[test]
fn config_command_prints_the_commented_defaults() {
    let out = Command::new(binary()).arg("config").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("http_addr = \"127.0.0.1:8902\""), "{text}");
    assert!(text.contains("# "), "{text}");
}
