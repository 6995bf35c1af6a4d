//! The binary's start-up rules.

use std::process::Command;

fn onboard(envs: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onboard"));
    cmd.arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    for (key, value) in [
        ("SIGNUP_RATE_LIMIT_PER_HOUR", "lots"),
        ("APP_URL", "not a url"),
        ("PROVISIONING_TIMEOUT_SECONDS", "-5"),
        ("SAMPLE_DATA_ENABLED", "maybe"),
        ("DATABASE_URL", "mysql://localhost/x"),
    ] {
        let out = onboard(&[(key, value)]);
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{err}");
        assert!(
            err.contains("environment"),
            "names where the value came from: {err}"
        );
    }
}

#[test]
fn production_refuses_the_default_jwt_secret() {
    let out = onboard(&[("APP_ENV", "production")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("JWT_SECRET"), "{err}");
}

#[test]
fn production_refuses_to_start_without_stripe() {
    let out = onboard(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-long-random-production-secret"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("STRIPE_SECRET_KEY"), "{err}");
}

#[test]
fn migrate_creates_and_migrates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("DATABASE_URL", "sqlite://onboard.db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("onboard.db").exists());
}

#[test]
fn settings_file_and_dotenv_are_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("onboard.toml"),
        "DATABASE_URL = \"sqlite://from-toml.db\"\n",
    )
    .unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onboard"));
        cmd.arg("migrate")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        assert!(cmd.output().unwrap().status.success());
    };
    run(&[]);
    assert!(dir.path().join("from-toml.db").exists());
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://from-dotenv.db\n",
    )
    .unwrap();
    run(&[]);
    assert!(dir.path().join("from-dotenv.db").exists());
    run(&[("DATABASE_URL", "sqlite://from-env.db")]);
    assert!(dir.path().join("from-env.db").exists());
}

#[test]
fn demo_runs_the_whole_journey_and_reports_an_active_tenant() {
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .arg("demo")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "POST /signup",
        "provisioning (worker)",
        "welcome email delivered",
        "status=active",
        "api key       onb_",
        "login/magic?token=",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
