use super::*;

fn resolve(rt: &str, lock: Option<&str>) -> Result<String, CatalogError> {
    let c = RuntimeCatalog::builtin();
    c.resolve(c.lookup(rt)?, lock).map(|r| r.version)
}

#[test]
fn catalog_has_the_twelve_runtimes_of_the_guide_and_two_newer_node_lines() {
    let c = RuntimeCatalog::builtin();
    assert_eq!(c.runtimes().len(), 14);
    assert_eq!(c.revised_names(), ["python311", "nodejs18", "nodejs20", "nodejs22"]);
    let node22 = c.lookup("NODEJS_22").unwrap();
    assert!(node22.releases.iter().all(|r| r.version.starts_with("22.")));
}

#[test]
/// The guide's cases for `runtime-version`, on App Runner's current tables (B1):
/// unpinned and prefix locks take the newest current row, exact guide versions still resolve.
fn resolution_cases_of_the_guide() {
    assert_eq!(resolve("python3", None).unwrap(), "3.8.20");
    let c = RuntimeCatalog::builtin();
    let py = c.lookup("python311").unwrap();
    assert_eq!(c.resolve_held(py, None, Some("3.11.10")).unwrap().version, "3.11.10");
    assert_eq!(c.resolve_held(py, Some("3.11.12"), Some("3.11.10")).unwrap().version, "3.11.12");
    assert!(lock_accepts("3.11", "3.11.14") && lock_accepts(" 3.11.14 ", "3.11.14"));
    assert!(!lock_accepts("3.11.1", "3.11.14") && !lock_accepts("x", "3.11.14"));
    assert_eq!(compare_versions("3.11.9", "3.11.14"), std::cmp::Ordering::Less);
    assert_eq!(compare_versions("11.0.13.08.1", "11.0.13.8.1"), std::cmp::Ordering::Equal);
    assert_eq!(resolve("python3", Some("3.7")).unwrap(), "3.7.16");
    assert_eq!(resolve("python3", Some("3.8.5")).unwrap(), "3.8.5");
    assert_eq!(resolve("php81", Some("8.1")).unwrap(), "8.1.33");
    assert_eq!(resolve("corretto11", Some("11.0.13")).unwrap(), "11.0.13.08.1");
    assert_eq!(resolve("corretto11", Some("11.0.13.8.1")).unwrap(), "11.0.13.08.1");
    assert_eq!(resolve("corretto11", Some("11")).unwrap(), "11.0.28.6.1");
    assert_eq!(resolve("corretto8", Some("8.342")).unwrap(), "8.342.07.4");
    assert_eq!(resolve("nodejs16", Some("16.19")).unwrap(), "16.19.1");
    assert_eq!(resolve("python311", Some("3.11")).unwrap(), "3.11.14");
    assert_eq!(resolve("PYTHON_311", None).unwrap(), "3.11.14");
    assert_eq!(resolve(" nodejs18 ", Some("18.19.0")).unwrap(), "18.19.0");
}

#[test]
fn locks_resolve_for_every_runtime() {
    for (rt, lock, want) in [
        ("python3", None, "3.8.20"),
        ("python311", Some("3.11.7"), "3.11.7"),
        ("nodejs12", Some("12"), "12.22.12"),
        ("nodejs12", Some("12.21"), "12.21.0"),
        ("nodejs14", Some("14.21"), "14.21.3"),
        ("nodejs14", Some("14.20.1"), "14.20.1"),
        ("nodejs16", None, "16.20.2"),
        ("nodejs16", Some("16.17"), "16.17.1"),
        ("nodejs18", Some("18"), "18.20.8"),
        ("nodejs18", Some("18.19"), "18.19.1"),
        ("nodejs22", None, "22.21.1"),
        ("nodejs22", Some("22.16"), "22.16.0"),
        ("corretto11", Some("11.0"), "11.0.28.6.1"),
        ("corretto11", Some("11.0.22"), "11.0.22.7.1"),
        ("corretto11", Some("11.0.18"), "11.0.18.10.1"),
        ("corretto11", Some("11.0.18.10"), "11.0.18.10.1"),
        ("corretto11", Some("11.0.13.08"), "11.0.13.08.1"),
        ("corretto8", None, "8.472.08.1"),
        ("corretto8", Some("8.402"), "8.402.08.1"),
        ("corretto8", Some("8.392"), "8.392.08.1"),
        ("corretto8", Some("8.342.07.4"), "8.342.07.4"),
        ("corretto8", Some("8.312.7"), "8.312.07.1"),
        ("dotnet6", Some("6.0"), "6.0.36"),
        ("dotnet6", Some("6.0.9"), "6.0.9"),
        ("php81", Some("8.1.21"), "8.1.21"),
        ("ruby31", Some("3.1"), "3.1.7"),
        ("ruby31", Some("3.1.3"), "3.1.3"),
        ("go1", Some("1.18"), "1.18.10"),
        ("go1", Some("1.18.7"), "1.18.7"),
    ] {
        assert_eq!(resolve(rt, lock).unwrap(), want, "{rt} {lock:?}");
    }
    assert!(resolve("corretto8", Some("8.342.07.4.1")).unwrap_err().to_string().contains("is not a corretto8 version"));
    assert!(resolve("go1", Some("1.19")).unwrap_err().to_string().contains("listed: 1.18.10"));
    // nodejs22 has exactly App Runner's versions, not every Node.js 22 release.
    assert!(resolve("nodejs22", Some("22.18.0"))
        .unwrap_err()
        .to_string()
        .contains("listed: 22.21.1, 22.20.0, 22.17.0, 22.16.0, 22.14.0"));
}

#[test]
fn unlisted_versions_are_rejected_with_the_neighbours() {
    let e = resolve("python3", Some("3.7.7")).unwrap_err().to_string();
    assert!(e.contains("`3.7.7`") && e.ends_with("listed: 3.7.16, 3.7.15, 3.7.10"), "{e}");
    let e = resolve("python3", Some("3.11")).unwrap_err().to_string();
    assert!(e.contains("runtime `python311`"), "{e}");
    let e = resolve("python3", Some("3.x")).unwrap_err().to_string();
    assert!(e.contains("expected major[.minor[.patch]]"), "{e}");
}

#[test]
fn runtime_names_suggest_the_closest() {
    let c = RuntimeCatalog::builtin();
    assert!(c.lookup("python3.11").unwrap_err().to_string().contains("did you mean `python311`?"));
    assert!(c.lookup("Ruby 3.1").unwrap_err().to_string().contains("did you mean `ruby31`?"));
    assert!(c.lookup("nodejs24").unwrap_err().to_string().contains("not a managed runtime"));
}
