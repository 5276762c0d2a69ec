//! A private repository on an HTTPS host, with a token in the deployment's URL or in the
//! worker's credential store: a redeploy asks the host which commit its branch names on the
//! worker's own client, with that token, and nothing shows it. Its own test binary: the test
//! CA is trusted through `SSL_CERT_FILE` and `GIT_SSL_CAINFO`, which this process's TLS roots
//! are read from once.
#![allow(clippy::unwrap_used)]

mod common;

use common::git_http::{certificates, GitHost, HostOptions};
use common::*;

#[tokio::test]
async fn a_redeploy_asks_a_private_https_host_with_its_token_and_never_shows_it() {
    let certs = tempfile::tempdir().unwrap();
    let (chain, key, bundle) = certificates(certs.path());
    // Before anything here reads its TLS roots (once per process).
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("GIT_SSL_CAINFO", &bundle);

    let marker = uuid::Uuid::new_v4().simple().to_string();
    let token = format!("tok{marker}");
    let dir = committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  command: python3 -m http.server 8080\n  network:\n    port: 8080\n"),
        ("marker.txt", &marker),
    ]);
    let host = GitHost::start_with(HostOptions {
        v2: true,
        tls: Some((chain, key)),
        basic_auth: Some(("deploy".into(), token.clone())),
    })
    .await;
    let url = host.publish(dir.path(), "private").replace("https://", &format!("https://deploy:{token}@"));
    let repository = format!("127.0.0.1:5000/apprunner-tests/redeploy-https-{marker}");

    let first = build_with(&settings(), deployment(&url, &repository, None)).await;
    first.image();
    host.take_asked();
    let again = build_with(&settings(), deployment(&url, &repository, Some(&first))).await;
    assert!(again.has_line("nothing was fetched or solved"), "{:#?}", again.log);
    let asked = host.take_asked();
    assert_eq!(asked.len(), 2, "the advertisement and ls-refs, nothing else: {asked:?}");
    assert!(asked.iter().all(|a| a.authorized && a.agent.starts_with("apprunner-build/")), "{asked:?}");

    // A token the host refuses: git is asked too, and the fetch fails saying so, without it.
    let wrong = url.replace(&token, "wrong-secret");
    let refused = build_with(&settings(), deployment(&wrong, &repository, Some(&first))).await;
    let error = refused.error().to_string();
    assert!(!error.contains("wrong-secret"), "{error}");
    assert!(error.contains("127.0.0.1"), "the error names the host: {error}");
    for line in first.log.iter().chain(&again.log).chain(&refused.log) {
        assert!(!line.contains(&token) && !line.contains("wrong-secret"), "{line}");
    }

    // The token in the worker's credential store instead (`--git-credentials`), for this host
    // only: the redeploy's two requests carry it too.
    let bare = url.replace(&format!("deploy:{token}@"), "");
    let store = certs.path().join("git-credentials");
    let port = host.port;
    let kept = format!("https://other:nope@example.com\nhttps://deploy:{token}@127.0.0.1:{port}\n");
    std::fs::write(&store, &kept).unwrap();
    let stored = apprunner_build::pipeline::Settings { git_credentials: Some(store.clone()), ..settings() };
    let first = build_with(&stored, deployment(&bare, &repository, None)).await;
    first.image();
    host.take_asked();
    let again = build_with(&stored, deployment(&bare, &repository, Some(&first))).await;
    assert!(again.has_line("nothing was fetched or solved"), "{:#?}", again.log);
    let asked = host.take_asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|a| a.authorized && a.agent.starts_with("apprunner-build/")), "{asked:?}");
    assert!(first.log.iter().chain(&again.log).all(|line| !line.contains(&token)));

    // The store is the worker's, never written: a job's own token is not added to it (for
    // other jobs to that host to use), and a refusal does not erase its entry.
    let own = build_with(&stored, deployment(&url, &repository, None)).await;
    own.image();
    let refused = build_with(&stored, deployment(&wrong, &repository, None)).await;
    assert!(refused.result.is_err());
    assert_eq!(std::fs::read_to_string(&store).unwrap(), kept, "the store is as the worker was given it");
    let stale_store = format!("https://deploy:stale@127.0.0.1:{port}\n");
    std::fs::write(&store, &stale_store).unwrap();
    let stale = build_with(&stored, deployment(&bare, &repository, None)).await;
    assert!(stale.result.is_err());
    assert_eq!(std::fs::read_to_string(&store).unwrap(), stale_store, "a refused entry stays for the operator to mend");
}
