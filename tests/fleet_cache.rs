//! The fleet cache: a worker whose `BuildKit` has never built a service reuses what another
//! worker built, through the registry cache. "Another worker" is this machine's `BuildKit` with
//! its build cache pruned in between; this file holds one test, so no other build runs then.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::pipeline::Settings;
use common::*;

#[tokio::test]
async fn a_worker_with_an_empty_cache_reuses_what_another_built() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[(
        "apprunner.yaml",
        &format!(
            "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo {marker} > /app/built.txt\n      - date +%s%N > /app/when.txt\nrun:\n  command: python3 -m http.server 8080\n"
        ),
    )]);
    let service = ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/fleet-{marker}:1")).unwrap();
    let req = || {
        let mut r = request(dir.path().to_str().unwrap(), "/", None, None);
        r.target = service.clone();
        r
    };
    // Both builds go to one tag: without this the second would reuse the first's image whole,
    // and BuildKit would never be asked (what this test is about is what BuildKit finds).
    let settings = Settings { image_reuse: false, ..settings() };
    let first = build_with(&settings, req()).await;
    let first_image = first.image().to_string();
    assert!(first.has_line("not imported"), "a new service has no fleet cache yet");
    assert!(first.has_line(&format!("fleet-{marker}:cache exported in")), "the first build fills it");

    let pruned = std::process::Command::new(DOCKER).args(["builder", "prune", "-af"]).output().unwrap();
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));

    let second = build_with(&settings, req()).await;
    let second_image = second.image().to_string();
    assert!(second.has_line(&format!(
        "Fleet cache 127.0.0.1:5000/apprunner-build/cache/apprunner-tests/fleet-{marker}:cache imported in"
    )));
    assert!(second.has_line("[build] build command 2/2: date +%s%N > /app/when.txt cached."), "{:#?}", second.log);
    assert!(second.has_line("steps came from this BuildKit's cache or the fleet cache"));
    assert!(!second.has_line("exported in") || second.has_line("Image exported"), "nothing new to export");
    // The steps did not run again: the file they wrote is the first build's.
    let when = |image: &str| in_image(image, "cat /app/built.txt /app/when.txt");
    assert_eq!(when(&first_image), when(&second_image));
    assert!(when(&second_image).starts_with(&marker));
}
