//! The credentials given to each new panel client: their shape, and that two processes started
//! together never make the same ones (a seeded or clock-based generator would).

use std::collections::HashSet;
use std::process::{Command, Stdio};

use workers::panel::credentials::ClientCredentials;

const CHILD: &str = "JOBQ_TEST_CREDENTIALS_CHILD";
const PER_PROCESS: usize = 200;

fn assert_shape(c: &ClientCredentials) {
    let uuid = uuid::Uuid::parse_str(&c.uuid).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 4, "{}", c.uuid);
    assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
    assert_eq!(
        c.uuid,
        uuid.hyphenated().to_string(),
        "lower-case, hyphenated"
    );
    assert_eq!(c.password.len(), 16);
    assert!(c.password.chars().all(|ch| ch.is_ascii_alphanumeric()));
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(engine.decode(&c.key_32).expect("base64").len(), 32);
    assert_eq!(engine.decode(&c.key_16).expect("base64").len(), 16);
}

/// Checks the shape of a batch; when started by `two_processes_make_different_credentials`,
/// also prints the batch for it to compare.
#[test]
fn credentials_have_the_panels_shape() {
    let print = std::env::var_os(CHILD).is_some();
    for _ in 0..PER_PROCESS {
        let c = ClientCredentials::generate().expect("OS RNG");
        assert_shape(&c);
        if print {
            println!("CRED {} {} {} {}", c.uuid, c.password, c.key_32, c.key_16);
        }
    }
}

#[test]
fn the_panel_config_carries_them_under_every_protocol() {
    let c = ClientCredentials::generate().expect("OS RNG");
    let config = c.panel_config("alice");
    for protocol in ["vless", "vmess", "tuic"] {
        assert_eq!(config[protocol]["uuid"], c.uuid.as_str(), "{protocol}");
    }
    for protocol in ["trojan", "hysteria2", "anytls", "mixed", "tuic"] {
        assert_eq!(
            config[protocol]["password"],
            c.password.as_str(),
            "{protocol}"
        );
    }
    assert_eq!(config["hysteria"]["auth_str"], c.password.as_str());
    assert_eq!(config["shadowsocks"]["password"], c.key_32.as_str());
    assert_eq!(config["shadowsocks16"]["password"], c.key_16.as_str());
    assert_eq!(config["vless"]["name"], "alice");
}

#[test]
fn two_processes_make_different_credentials() {
    let exe = std::env::current_exe().expect("test binary");
    let spawn = || {
        Command::new(&exe)
            .args([
                "credentials_have_the_panels_shape",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child")
    };
    // Both started before either is waited on: they draw at the same moment.
    let children = [spawn(), spawn()];
    let mut seen = HashSet::new();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("CRED ")).collect();
        assert_eq!(lines.len(), PER_PROCESS, "{text}");
        for secret in lines.iter().flat_map(|l| l.split(' ').skip(1)) {
            assert!(seen.insert(secret.to_owned()), "{secret} drawn twice");
        }
    }
    assert_eq!(seen.len(), 2 * PER_PROCESS * 4);
}
