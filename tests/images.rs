//! What a build pushes, checked at the registry: an OCI index with its provenance, layers that
//! keep package caches out and `node_modules` apart, the same image manifest for the same inputs,
//! an image taken again under a new index when nothing changed.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::pipeline::Settings;
use common::*;

/// No local image under the final name that differs from the pushed one: `docker run` of the
/// name on the build machine pulls the finished image.
#[tokio::test]
async fn no_unfinished_local_image_under_the_final_name() {
    let target = format!("127.0.0.1:5000/apprunner-tests/local-copy:{}", uuid::Uuid::new_v4().simple());
    let mut req = request(guide_app().to_str().unwrap(), "/", None, None);
    req.target = apprunner_build::core::image_ref::ImageRef::parse(&target).unwrap();
    let built = build_with(&settings(), req).await;
    built.image();
    let local = std::process::Command::new(DOCKER).args(["image", "inspect", &target]).output().unwrap();
    assert!(!local.status.success(), "the Engine keeps {target}");
    assert_eq!(in_image(&target, "cd /app && ls server.py"), "server.py");
}

/// The image is an OCI index holding the image for this platform and, beside it, a SLSA
/// provenance attestation (mode=max) that pins the runtime's build and run images by digest;
/// registry UIs see the annotations.
#[tokio::test]
async fn images_are_oci_indexes_with_a_provenance_attestation() {
    use apprunner_build::edge::registry::Registry;
    let built = build(&guide_app(), "/", None).await;
    let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let index = registry.manifest_of(&r).await.unwrap().unwrap();
    assert_eq!(index.media_type, "application/vnd.oci.image.index.v1+json");
    let index = index.index().unwrap();
    assert_eq!(index.annotations()["org.opencontainers.image.title"], "e2e", "{index:#?}");
    let image = index.for_platform("linux", "amd64").unwrap();
    assert_eq!(image.media_type, "application/vnd.oci.image.manifest.v1+json");
    let attestation = index.attestation_of(&image.digest).expect("an attestation manifest beside the image");
    let statements = registry.manifest(&r.repo(), &attestation.digest).await.unwrap().unwrap().image().unwrap();
    let layer = &statements.layers[0];
    assert!(layer.annotation("in-toto.io/predicate-type").unwrap().starts_with("https://slsa.dev/provenance/"));
    // Read as plain JSON: what a consumer of the provenance sees, fields the service never names included.
    let statement: serde_json::Value =
        serde_json::from_slice(&registry.blob(&r.repo(), &layer.digest).await.unwrap()).unwrap();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v0.2");
    let materials: Vec<&str> =
        statement["predicate"]["materials"].as_array().unwrap().iter().map(|m| m["uri"].as_str().unwrap()).collect();
    for runtime_image in [
        "apprunner-runtimes/python3@3.8.20-build?digest=sha256:",
        "apprunner-runtimes/python3@3.8.20-run?digest=sha256:",
    ] {
        assert!(materials.iter().any(|m| m.contains(runtime_image)), "{runtime_image} not in {materials:#?}");
    }
    assert!(statement["predicate"]["buildConfig"]["llbDefinition"].as_array().is_some_and(|d| !d.is_empty()));
    // What the provenance cannot record (a solve without a frontend has no parameters), the
    // image's labels say.
    let (_, labels) = apprunner_build::edge::image::existing(&registry, &r).await.unwrap().unwrap();
    for (key, value) in [
        ("dev.apprunner-build.runtime", "python3"),
        ("dev.apprunner-build.runtime-version", "3.8.20"),
        ("dev.apprunner-build.build-process", "original"),
        ("dev.apprunner-build.configuration-source", "REPOSITORY"),
    ] {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
}

/// #11: npm's download cache is a BuildKit cache mount of the service: the original build's run
/// stage finds what its build stage downloaded, a rebuild after a code change finds it too, and
/// no cache lands in the image. (pip's cache works the same way, but the proxy this machine
/// reaches `PyPI` through strips the headers pip's HTTP cache needs, so pip stores nothing here.)
#[tokio::test]
async fn package_downloads_are_cached_per_service_and_never_in_the_image() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let config = "version: 1.0\nruntime: nodejs16\nbuild:\n  commands:\n    build:\n      - echo \"npm cache files=$(find /root/.npm/_cacache -type f 2>/dev/null | wc -l)\"\n      - npm install --omit=dev\nrun:\n  command: node app.js\n";
    let package = r#"{"name":"cached","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}"#;
    let service =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/npm-{marker}:1"))
            .unwrap();
    let build_version = |version: &str| {
        let dir = app(&[
            ("apprunner.yaml", config),
            ("package.json", package),
            ("app.js", &format!("console.log('{marker} {version}')\n")),
        ]);
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = service.clone();
        async move { (build_with(&settings(), req).await, dir) }
    };
    // What each stage's first command saw: no cache file, or some.
    let seen = |b: &Built| -> Vec<bool> {
        b.log
            .iter()
            .filter(|l| l.starts_with("[Build]"))
            .filter_map(|l| l.split("npm cache files=").nth(1))
            .map(|n| n.trim().parse::<usize>().unwrap() > 0)
            .collect()
    };
    let (first, _dir) = build_version("v1").await;
    first.image();
    assert_eq!(seen(&first), [false, true], "build stage: empty; run stage: filled by it");
    let (second, _dir) = build_version("v2").await;
    assert_eq!(seen(&second), [true, true], "the rebuild finds the downloads");
    // node_modules is a layer of its own in the image: the code change left it as it was, so
    // only the layers above it are new.
    let (before, after) = (layers(first.image()).await, layers(second.image()).await);
    let run_image = layers(&format!("127.0.0.1:5000/{}", catalog_run_image("nodejs16"))).await;
    assert_eq!(before.len(), run_image.len() + 3, "node_modules, the rest of /app, the run stage's npm install");
    assert_eq!(before[..=run_image.len()], after[..=run_image.len()], "the node_modules layer is the same");
    assert_ne!(before[run_image.len() + 1], after[run_image.len() + 1], "the rest of /app changed");
    assert!(second.has_line("[run] copy /app/node_modules from the build stage cached."), "{:#?}", second.log);
    let inside = in_image(
        second.image(),
        "cat node_modules/is-number/package.json | grep -c '\"version\": \"7.0.0\"'; find /root/.npm/_cacache -type f 2>/dev/null | wc -l",
    );
    assert_eq!(inside, "1\n0");
}

/// #11: the dependency warm-up changes how long a rebuild takes, not what is built: the image's
/// files are the same with and without it (compiled bytecode aside: it embeds when it was
/// compiled); a code change leaves the warm-up cached, and the real install finds its packages.
#[tokio::test]
async fn the_warm_up_leaves_the_image_as_it_was() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let files = [
        ("apprunner.yaml", "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python server.py\n".to_string()),
        ("requirements.txt", "six==1.16.0\n".to_string()),
        ("server.py", format!("print('{marker}')\n")),
    ];
    let dir = app(&files.iter().map(|(n, b)| (*n, b.as_str())).collect::<Vec<_>>());
    let build_as = |warm: bool| {
        let mut settings = settings();
        settings.warm_steps = warm;
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = apprunner_build::core::image_ref::ImageRef::parse(&format!(
            "127.0.0.1:5000/apprunner-tests/warm-{warm}-{marker}:1"
        ))
        .unwrap();
        async move { build_with(&settings, req).await }
    };
    let warmed = build_as(true).await;
    // Finished, or cached from an earlier run: its cache key is the manifest's content.
    for stage in ["build", "run"] {
        let warm =
            format!("[{stage}] dependency warm-up: pip install -r requirements.txt (on requirements.txt alone) ");
        assert!(warmed.has_line(&format!("{warm}finished")) || warmed.has_line(&format!("{warm}cached")));
    }
    let plain = build_as(false).await;
    assert!(!plain.has_line("warm-up"));
    let files_of = |image: &str| {
        in_image(image, "find / -xdev -type f ! -path '/proc/*' ! -path '/sys/*' ! -name '*.pyc' ! -path '/etc/host*' ! -path '/etc/resolv.conf' -exec sha256sum {} + | sort -k2")
    };
    let (with, without) = (files_of(warmed.image()), files_of(plain.image()));
    assert!(with.contains("site-packages/six.py") || with.contains("dist-packages/six.py"), "six is installed");
    assert_eq!(with, without, "the same files with and without the warm-up");

    std::fs::write(dir.path().join("server.py"), format!("print('{marker} v2')\n")).unwrap();
    let changed = build_as(true).await;
    changed.image();
    assert!(changed
        .has_line("[build] dependency warm-up: pip install -r requirements.txt (on requirements.txt alone) cached."));
    assert!(changed.log.iter().any(|l| l.contains("Requirement already satisfied: six==1.16.0")), "{:#?}", changed.log);
}

/// #11: a warm-up that cannot work on the manifests alone (a requirements file that includes
/// another) is left out, and the build goes on as App Runner's steps say.
#[tokio::test]
async fn a_warm_up_that_fails_is_left_out() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - pip3 install -r requirements.txt\nrun:\n  command: python3 server.py\n"),
        ("requirements.txt", "-r base.txt\n"),
        ("base.txt", "six==1.16.0\n"),
        ("server.py", &format!("print('{marker}')\n")),
    ]);
    let built = build(dir.path(), "/", None).await;
    built.image();
    assert!(built.has_line("[build] dependency warm-up left out ("), "{:#?}", built.log);
    assert!(built.has_line("the build goes on without it."));
    assert!(built.has_line("[build] build command 1/1: pip3 install -r requirements.txt finished"));
}

/// #12: the image of a commit is the same whoever builds it and however the source is named:
/// two builds of one commit, one from a `file://` URL and one from the directory, push the same
/// image manifest; each build's index differs (its provenance, and the operation id, annotated
/// on the index, not in the image).
#[tokio::test]
async fn one_commit_gives_one_image_manifest() {
    use apprunner_build::edge::registry::Registry;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &marker),
    ]);
    let target =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/same-{marker}:1"))
            .unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let mut manifests = Vec::new();
    let mut indexes = Vec::new();
    // The operation ids differ, so equal manifests also say the id is not in the image.
    let sources =
        [(format!("file://{}", dir.path().display()), Some("main")), (dir.path().display().to_string(), None)];
    for (source, reference) in sources {
        let mut req = request(&source, "/", None, reference);
        req.target = target.clone();
        // BuildKit solves both: the second would otherwise reuse the first's image.
        let built = build_with(&Settings { image_reuse: false, ..settings() }, req.clone()).await;
        let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
        let index = registry.manifest_of(&r).await.unwrap().unwrap().index().unwrap();
        assert_eq!(index.annotations()["dev.apprunner-build.operation-id"], req.operation_id.as_str());
        manifests.push(index.manifests[0].digest.clone());
        indexes.push(r.reference());
    }
    assert_eq!(manifests[0], manifests[1], "one commit, one image");
    assert_ne!(indexes[0], indexes[1], "each build has its own provenance");
}

/// #11: a build whose inputs are exactly those of the image at its target tag reuses it: the same
/// image manifest under a new index naming this deployment, and no solve. Any change of input,
/// or `image_reuse: false`, solves.
#[tokio::test]
async fn the_same_inputs_to_the_same_tag_reuse_the_image() {
    use apprunner_build::edge::registry::Registry;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - date +%s%N > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &marker),
    ]);
    let target =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/reuse-{marker}:1"))
            .unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let build_to = |settings: Settings| {
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = target.clone();
        async move { (build_with(&settings, req.clone()).await, req.operation_id) }
    };
    let index_of = |built: &Built| {
        let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
        let registry = &registry;
        async move { registry.manifest_of(&r).await.unwrap().unwrap().index().unwrap() }
    };
    let (first, first_op) = build_to(settings()).await;
    assert!(!first.has_line("reused under a new index"));
    let (second, second_op) = build_to(settings()).await;
    assert!(
        second.has_line("holds the image of these exact inputs")
            && second.has_line(&format!("built by deployment {first_op}")),
        "{:#?}",
        second.log
    );
    assert!(!second.has_line("[build] build command 1/1"), "nothing was solved: {:#?}", second.log);
    assert!(second.has_line("Successfully built your application source code."));
    assert!(second.result.as_ref().unwrap().stages.is_empty());
    let (i1, i2) = (index_of(&first).await, index_of(&second).await);
    assert_eq!(i1.manifests, i2.manifests, "the same image and provenance");
    assert_eq!(i2.annotations()["dev.apprunner-build.operation-id"], second_op.as_str());
    assert_ne!(first.image(), second.image(), "a new index for the new deployment");
    assert_eq!(in_image(first.image(), "cat /app/built.txt"), in_image(second.image(), "cat /app/built.txt"));

    // Asked not to reuse: BuildKit solves (its cache answers), and the index is BuildKit's.
    let (third, _) = build_to(Settings { image_reuse: false, ..settings() }).await;
    assert!(third.has_line("[build] build command 1/1: date +%s%N > /app/built.txt cached."), "{:#?}", third.log);
    assert!(!third.has_line("reused under a new index"));
    // Another input: the source changed, so the step runs again.
    std::fs::write(dir.path().join("marker.txt"), format!("{marker} v2")).unwrap();
    let (fourth, _) = build_to(settings()).await;
    assert!(!fourth.has_line("reused under a new index"));
    assert!(fourth.has_line("[build] build command 1/1: date +%s%N > /app/built.txt finished"), "{:#?}", fourth.log);
    assert_ne!(in_image(first.image(), "cat /app/built.txt"), in_image(fourth.image(), "cat /app/built.txt"));
}

/// #24: the builds of one worker (one set of settings) of the same inputs into one repository
/// under another tag take the image the first pushed, as a fleet's services of one app do: a new
/// index over the same manifests, nothing solved. Another repository, or settings of their own
/// (a CLI run), solve.
#[tokio::test]
async fn a_workers_builds_of_the_same_inputs_into_one_repository_take_its_image() {
    use apprunner_build::core::image_ref::ImageRef;
    use apprunner_build::edge::registry::Registry;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - date +%s%N > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &marker),
    ]);
    let repository = format!("127.0.0.1:5000/apprunner-tests/recent-{marker}");
    let build_to = |settings: Settings, target: String| {
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = ImageRef::parse(&target).unwrap();
        async move { build_with(&settings, req).await }
    };
    // Clones share what the builds pushed, as a worker's builds share its settings.
    let worker = settings();
    let first = build_to(worker.clone(), format!("{repository}:a")).await;
    let second = build_to(worker.clone(), format!("{repository}:b")).await;
    let taken = format!("{repository}@{}, pushed by this worker for another deployment, holds the image", {
        first.image().rsplit_once('@').unwrap().1
    });
    assert!(second.has_line(&taken), "{:#?}", second.log);
    assert!(!second.has_line("[build] build command 1/1"), "nothing was solved: {:#?}", second.log);
    let registry = Registry::new(Default::default(), vec![]);
    let mut indexes = Vec::new();
    for built in [&first, &second] {
        let r = ImageRef::parse(built.image()).unwrap();
        indexes.push(registry.manifest_of(&r).await.unwrap().unwrap().index().unwrap());
    }
    assert_eq!(indexes[0].manifests, indexes[1].manifests, "the same image, provenance and SBOM");
    assert_ne!(first.image(), second.image(), "a new index for the new deployment");
    assert_eq!(in_image(first.image(), "cat /app/built.txt"), in_image(second.image(), "cat /app/built.txt"));

    // A process of its own knows of no push: BuildKit solves, every step cached.
    let third = build_to(settings(), format!("{repository}:c")).await;
    assert!(third.has_line("[build] build command 1/1: date +%s%N > /app/built.txt cached."), "{:#?}", third.log);
    // Another repository is never given this one's image.
    let fourth = build_to(worker, format!("{repository}-elsewhere:a")).await;
    assert!(!fourth.has_line("reused under a new index"), "{:#?}", fourth.log);
    fourth.image();
}

/// #24: a deployment of its service's unchanged inputs (what the service's record keeps of the
/// build that made its current image) takes that image before fetching anything, and reports
/// what that build reported. A new commit on the branch, or a runtime image that names another
/// digest now, is not that: the ordinary build runs.
#[tokio::test]
async fn a_redeploy_of_unchanged_inputs_fetches_nothing_until_an_input_changes() {
    use apprunner_build::core::image_ref::ImageRef;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  command: python3 -m http.server 8080\n  network:\n    port: 8080\n  env:\n    - name: GREETING\n      value: hello\n"),
        ("marker.txt", &marker),
    ]);
    let url = format!("file://{}", dir.path().display());
    let repository = format!("127.0.0.1:5000/apprunner-tests/redeploy-{marker}");
    let deploy = |current: Option<&Built>| deployment(&url, &repository, current);
    let first = build_with(&settings(), deploy(None)).await;
    let first_result = first.result.as_ref().unwrap();
    assert!(first_result.prior.is_some(), "the build says what a record keeps of it");

    let again = build_with(&settings(), deploy(Some(&first))).await;
    let unchanged = format!("The service's current image {} was built from these exact inputs", first.image());
    assert!(again.has_line(&unchanged) && again.has_line("nothing was fetched or solved"), "{:#?}", again.log);
    assert!(!again.has_line("Pulling source code"), "{:#?}", again.log);
    let (a, b) = (first_result, again.result.as_ref().unwrap());
    assert_eq!((&a.runtime, &a.runtime_version, a.build_process), (&b.runtime, &b.runtime_version, b.build_process));
    assert_eq!((&a.commit, &a.start_command, a.port, &a.run_env), (&b.commit, &b.start_command, b.port, &b.run_env));
    let digest = |b: &Built| ImageRef::parse(b.image()).unwrap().digest.unwrap();
    let without_index = |p: &Option<apprunner_build::core::result::PriorBuild>| p.clone().map(|p| p.with_index(None));
    assert_eq!(without_index(&a.prior), without_index(&b.prior), "its record keeps the same build");
    assert!(a.prior.as_ref().unwrap().index_of(&digest(&first)).is_some(), "the record keeps the index's bytes");
    assert!(b.prior.as_ref().unwrap().index_of(&digest(&again)).is_some(), "and a redeploy's, its own index's");
    let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
    let mut indexes = Vec::new();
    for built in [&first, &again] {
        let r = ImageRef::parse(built.image()).unwrap();
        indexes.push(registry.manifest_of(&r).await.unwrap().unwrap().index().unwrap().manifests);
    }
    assert_eq!(indexes[0], indexes[1], "the same image, provenance and SBOM under the new index");
    assert_ne!(first.image(), again.image(), "a new index for the new deployment");
    assert_eq!(in_image(again.image(), "echo $GREETING"), "hello");

    // A runtime image whose tag names another digest now: fetched and planned; BuildKit would
    // pull the new image, so what is taken (if anything) is decided by the build key.
    let mut moved = deploy(Some(&first));
    let prior = moved.prior.as_mut().unwrap();
    let tag = prior.runtime_images.keys().next().unwrap().clone();
    prior.runtime_images.insert(tag, format!("sha256:{}", "0".repeat(64)));
    let runtime_moved = build_with(&settings(), moved).await;
    assert!(runtime_moved.has_line("Pulling source code"), "{:#?}", runtime_moved.log);
    assert!(!runtime_moved.has_line("nothing was fetched or solved"), "{:#?}", runtime_moved.log);

    // The current image's manifests deleted since its record was written: the bytes the record
    // keeps cannot be written again, so the redeploy is a miss and the build restores them.
    let child = &indexes[1][0].digest;
    let url = format!("http://127.0.0.1:5000/v2/apprunner-tests/redeploy-{marker}/manifests/{child}");
    assert!(reqwest::Client::new().delete(&url).send().await.unwrap().status().is_success());
    let restored = build_with(&settings(), deploy(Some(&again))).await;
    assert!(restored.has_line("Pulling source code"), "{:#?}", restored.log);
    assert_eq!(in_image(restored.image(), "echo $GREETING"), "hello");

    // A new commit on the branch: built.
    std::fs::write(dir.path().join("marker.txt"), format!("{marker} v2")).unwrap();
    git(dir.path(), &["commit", "-q", "-am", "two"]);
    let next = build_with(&settings(), deploy(Some(&first))).await;
    assert!(next.has_line("Pulling source code") && next.has_line("[build] build command 1/1"), "{:#?}", next.log);
    assert_ne!(next.result.as_ref().unwrap().commit, first_result.commit);
}

/// A redeploy of a repository on an HTTP host asks which commit its branch names with git's
/// protocol v2 on the worker's own client (two requests, no git process); a host that speaks
/// only protocol v0 is asked through git. Either way a new commit on the branch is built.
#[tokio::test]
async fn a_redeploy_asks_an_http_host_for_its_branch_in_two_requests() {
    for v2 in [true, false] {
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let dir = committed(&[
            ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  command: python3 -m http.server 8080\n  network:\n    port: 8080\n"),
            ("marker.txt", &marker),
        ]);
        let host = common::git_http::GitHost::start(v2).await;
        let url = host.publish(dir.path(), "app");
        let repository = format!("127.0.0.1:5000/apprunner-tests/redeploy-http-{marker}");
        let deploy = |current: Option<&Built>| deployment(&url, &repository, current);
        let first = build_with(&settings(), deploy(None)).await;
        host.take_asked();

        let again = build_with(&settings(), deploy(Some(&first))).await;
        assert!(again.has_line("nothing was fetched or solved"), "v2 {v2}: {:#?}", again.log);
        let asked = host.take_asked();
        let ours: Vec<_> = asked.iter().filter(|a| a.agent.starts_with("apprunner-build/")).collect();
        let gits = asked.iter().filter(|a| a.agent.starts_with("git/")).count();
        let paths: Vec<_> = ours.iter().map(|a| format!("{} {}", a.method, a.path)).collect();
        if v2 {
            assert_eq!(paths, ["GET /app.git/info/refs?service=git-upload-pack", "POST /app.git/git-upload-pack"]);
            assert_eq!(gits, 0, "no git process asked: {asked:?}");
        } else {
            // The advertisement is v0's: git is asked instead.
            assert_eq!(paths, ["GET /app.git/info/refs?service=git-upload-pack"], "{asked:?}");
            assert!(gits > 0, "{asked:?}");
        }

        // A new commit on the branch: built.
        std::fs::write(dir.path().join("marker.txt"), format!("{marker} v2")).unwrap();
        git(dir.path(), &["commit", "-q", "-am", "two"]);
        host.push(dir.path(), "app");
        let next = build_with(&settings(), deploy(Some(&first))).await;
        assert!(next.has_line("Pulling source code") && next.has_line("[build] build command 1/1"), "{:#?}", next.log);
        assert_eq!(
            next.result.as_ref().unwrap().commit.as_deref(),
            Some(git(dir.path(), &["rev-parse", "HEAD"]).trim())
        );
    }
}

/// The layer digests of an image (its platform's manifest, when it is an index).
async fn layers(image: &str) -> Vec<String> {
    use apprunner_build::edge::registry::Registry;
    let registry = Registry::new(Default::default(), vec![]);
    let r = apprunner_build::core::image_ref::ImageRef::parse(image).unwrap();
    let mut manifest = registry.manifest_of(&r).await.unwrap().unwrap();
    if manifest.is_index() {
        let digest = manifest.platform_manifest("linux", "amd64").unwrap();
        manifest = registry.manifest(&r.repo(), &digest).await.unwrap().unwrap();
    }
    manifest.image().unwrap().layers.into_iter().map(|l| l.digest.to_string()).collect()
}

/// The run image of `runtime`'s newest version, as the catalog names it.
fn catalog_run_image(runtime: &str) -> String {
    use apprunner_build::core::catalog::RuntimeCatalog;
    let catalog = RuntimeCatalog::builtin();
    let rt = catalog.lookup(runtime).unwrap();
    let resolved = catalog.resolve_held(rt, None, None).unwrap();
    resolved.run_image
}
