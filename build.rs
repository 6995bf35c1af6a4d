//! Marks the build when `TEST_DATABASE_URL` is set, so the PostgreSQL half of the test suite
//! runs; without it those tests are reported as ignored, with the reason, instead of passing
//! without having run.

fn main() {
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rustc-check-cfg=cfg(onboard_postgres_tests)");
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=onboard_postgres_tests");
    }
}
