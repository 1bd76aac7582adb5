//! `scripts/kafka.sh`, the local Apache Kafka: its failures are clear errors, never a hang.
//! (Starting and stopping a healthy broker is exercised by every `kafka::` test of the suite,
//! whose broker it starts.)

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");

fn kafka_sh(args: &[&str], envs: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("running scripts/kafka.sh");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("kx-script-{name}-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_taken_port_is_refused_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = temp_dir("taken");
    let (out, took) = kafka_sh(
        &["start", "--port", &port, "--dir", &dir, "--ephemeral"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("port {port} on 127.0.0.1 is taken")),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_broker_that_exits_during_start_shows_its_last_log_lines() {
    // An impossible heap makes the JVM exit at once.
    let port = free_port().to_string();
    let dir = temp_dir("exits");
    let (out, took) = kafka_sh(
        &[
            "start",
            "--port",
            &port,
            "--dir",
            &dir,
            "--heap",
            "1x",
            "--ephemeral",
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("a broker process exited during start"),
        "{err}"
    );
    assert!(err.contains("--- last 60 lines of"), "{err}");
    assert!(err.contains("Invalid maximum heap size"), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    let (status, _) = kafka_sh(&["status", "--dir", &dir], &[]);
    assert!(!status.status.success(), "nothing left running");
}

#[test]
fn missing_java_is_named() {
    // A PATH with the tools the script uses, but no java.
    let bin = temp_dir("nojava-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "bash",
        "cat",
        "dirname",
        "mkdir",
        "sha256sum",
        "cut",
        "sed",
        "rm",
        "mv",
        "seq",
        "sleep",
        "grep",
        "tail",
    ] {
        let target = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let target = String::from_utf8_lossy(&target.stdout).trim().to_string();
        let link = std::path::Path::new(&bin).join(tool);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
    }
    let port = free_port().to_string();
    let dir = temp_dir("nojava");
    let (out, _) = kafka_sh(
        &["start", "--port", &port, "--dir", &dir, "--ephemeral"],
        &[("PATH", &bin), ("JAVA_HOME", "")],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Java is not installed"), "{err}");
    let _ = std::fs::remove_dir_all(&bin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broker_maven_cannot_resolve_is_a_clear_error() {
    // A pom naming a Kafka release that does not exist, resolved offline: Maven fails fast.
    let tool = temp_dir("badpom");
    std::fs::create_dir_all(&tool).unwrap();
    let pom = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/kafka/pom.xml"))
        .unwrap();
    let bad = pom.replace(
        &pom[pom.find("<kafka.version>").unwrap()..pom.find("</kafka.version>").unwrap()],
        "<kafka.version>0.0.0-no-such-release",
    );
    assert!(bad.contains("0.0.0-no-such-release"));
    std::fs::write(std::path::Path::new(&tool).join("pom.xml"), bad).unwrap();
    let (out, took) = kafka_sh(
        &["fetch"],
        &[("KAFKA_TOOL_DIR", &tool), ("KAFKA_MVN_FLAGS", "-o")],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Maven could not resolve the broker"), "{err}");
    assert!(
        err.contains("0.0.0-no-such-release"),
        "Maven's reason is shown: {err}"
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    let _ = std::fs::remove_dir_all(&tool);
}
