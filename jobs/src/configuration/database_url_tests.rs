//! The database URL as the configuration reads it: masked, checked, per backend (the type
//! itself is the engine's, `queue::settings::DatabaseUrl`).

use crate::configuration::test_support::*;
use std::path::PathBuf;

use crate::configuration::*;

#[test]
fn password_masked() {
    let url = DatabaseUrl::parse("postgres://jobq:hunter2@db.example:5432/jobq?sslmode=require")
        .expect("valid");
    assert_eq!(
        url.to_string(),
        "postgres://jobq:****@db.example:5432/jobq?sslmode=require"
    );
    assert!(!format!("{url:?}").contains("hunter2"));
    assert!(format!("{url:?}").contains("****"));
    assert!(url.as_str().contains("hunter2"), "as_str is the real URL");

    let url =
        DatabaseUrl::parse("postgres://db.example/jobq?user=x&password=hunter2").expect("valid");
    assert_eq!(
        url.to_string(),
        "postgres://db.example/jobq?user=x&password=****"
    );

    let env = [("JOBQ_DATABASE_URL", "postgres://jobq:hunter2@db/jobq")];
    let s = load(None, &env, &[]).expect("loads");
    for text in [format!("{s:?}"), format!("{s:#?}"), s.describe()] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("jobq:****@db/jobq"), "{text}");
    }

    // Nor in errors about the URL.
    let env = [("JOBQ_DATABASE_URL", "mysql://jobq:hunter2@db/jobq")];
    let err = load(None, &env, &[]).expect_err("bad scheme");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    for bad in [
        "mysql://jobq:hunter2@db/jobq",
        "mysql:jobq:hunter2@db/jobq",
        "jobq:hunter2@db/jobq",
        "postgres://jobq:hun ter2@d b/jobq",
    ] {
        let err = DatabaseUrl::parse(bad).expect_err("invalid");
        assert!(!err.to_string().contains("ter2"), "{err}");
        assert!(err.to_string().contains("database.url"), "{err}");
    }
    assert_eq!(mask_url("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(mask_url("sqlite://data/jobq.db"), "sqlite://data/jobq.db");
    assert_eq!(
        mask_url("postgres://u@h/db?application_name=a@b"),
        "postgres://u@h/db?application_name=a@b"
    );
}

#[test]
fn bad_url_scheme_rejected() {
    let err = load_err(
        None,
        &[("JOBQ_DATABASE_URL", "mysql://localhost/jobq")],
        &[],
    );
    assert!(err.contains("database.url"), "{err}");
    assert!(err.contains("JOBQ_DATABASE_URL"), "{err}");
    assert!(
        err.contains("sqlite://, sqlite:, postgres:// and postgresql://"),
        "{err}"
    );
    assert!(DatabaseUrl::parse("data/jobq.db").is_err());
    assert!(DatabaseUrl::parse("sqlite://").is_err());
    assert!(DatabaseUrl::parse("postgres://exa mple/db").is_err());
}

#[test]
fn sqlite_paths() {
    let path = |url: &str| DatabaseUrl::parse(url).expect("valid").sqlite_path();
    assert_eq!(
        path("sqlite://data/jobq.db"),
        Some(PathBuf::from("data/jobq.db"))
    );
    assert_eq!(path("sqlite:///abs/x.db"), Some(PathBuf::from("/abs/x.db")));
    assert_eq!(
        path("sqlite:data/x.db?mode=rwc"),
        Some(PathBuf::from("data/x.db"))
    );
    assert_eq!(path("sqlite::memory:"), None);
    assert_eq!(path("sqlite://x.db?mode=memory"), None);
    assert_eq!(path("postgres://localhost/jobq"), None);
    assert_eq!(
        DatabaseUrl::parse("sqlite:x.db").expect("valid").backend(),
        Backend::Sqlite
    );
    assert_eq!(
        DatabaseUrl::parse("postgresql://h/d")
            .expect("valid")
            .backend(),
        Backend::Postgres
    );
}

#[test]
fn a_postgres_url_must_name_its_database() {
    for url in [
        "postgres://",
        "postgres:///",
        "postgresql://db.example:5432",
    ] {
        let err = load_err(None, &[("JOBQ_DATABASE_URL", url)], &[]);
        assert!(err.contains("names no database"), "{url}: {err}");
    }
    for url in [
        "postgres:///jobq",
        "postgres://u@db.example/jobq",
        "postgres://h/?dbname=jobq",
    ] {
        load(None, &[("JOBQ_DATABASE_URL", url)], &[]).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
