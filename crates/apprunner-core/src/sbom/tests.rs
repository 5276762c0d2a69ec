use super::*;

fn pkg(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
    Package { ecosystem, name: name.into(), version: version.into(), arch: None }
}

#[test]
fn each_kind_of_file_is_known_by_its_path() {
    use Interest::*;
    for (path, want) in [
        ("var/lib/dpkg/status", Some(DpkgStatus)),
        ("./etc/os-release", Some(OsRelease)),
        ("usr/local/lib/python3.11/dist-packages/Flask-2.2.5.dist-info/METADATA", Some(PythonMetadata)),
        ("usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO", Some(PythonMetadata)),
        ("app/node_modules/express/package.json", Some(NpmPackage)),
        ("app/node_modules/@types/node/package.json", Some(NpmPackage)),
        ("app/node_modules/express/lib/package.json", None),
        ("app/vendor/bundle/ruby/3.1.0/specifications/rack-2.2.8.gemspec", Some(Gemspec)),
        ("app/vendor/composer/installed.json", Some(ComposerInstalled)),
        ("root/.m2/repository/org/yaml/snakeyaml/2.0/snakeyaml-2.0.jar", Some(MavenRepository)),
        ("app/target/demo-0.0.1.jar", Some(Jar)),
        ("usr/share/java/foo.jar", None),
        ("app/server", None),
    ] {
        assert_eq!(interest(path, false), want, "{path}");
    }
    assert_eq!(interest("app/server", true), Some(Executable));
    assert_eq!(interest("usr/bin/ls", true), None, "only the app's own binaries are opened");
}

#[test]
fn each_kind_of_file_says_its_packages() {
    let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
    let found = parse_found(Interest::DpkgStatus, "var/lib/dpkg/status", status.as_bytes());
    assert_eq!(found.len(), 1);
    assert_eq!(
        purl(&found[0], Some(&("debian".into(), "12".into()))),
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    );
    let metadata = "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\n\nName: not this\n";
    let found = parse_found(Interest::PythonMetadata, "x", metadata.as_bytes());
    assert_eq!(purl(&found[0], None), "pkg:pypi/flask-login@0.6.3");
    let found = parse_found(Interest::NpmPackage, "x", br#"{"name":"@types/node","version":"20.1.0"}"#);
    assert_eq!(purl(&found[0], None), "pkg:npm/%40types/node@20.1.0");
    let found = parse_found(Interest::Gemspec, "a/specifications/net-http-0.4.1.gemspec", b"");
    assert_eq!(found, vec![pkg(Ecosystem::Gem, "net-http", "0.4.1")]);
    let found = parse_found(
        Interest::ComposerInstalled,
        "x",
        br#"{"packages":[{"name":"monolog/monolog","version":"3.5.0"}]}"#,
    );
    assert_eq!(purl(&found[0], None), "pkg:composer/monolog/monolog@3.5.0");
    let found =
        parse_found(Interest::MavenRepository, "root/.m2/repository/org/yaml/snakeyaml/2.0/snakeyaml-2.0.jar", b"");
    assert_eq!(purl(&found[0], None), "pkg:maven/org.yaml/snakeyaml@2.0");
    let pom = "#Generated\nversion=3.1.5\ngroupId=org.springframework.boot\nartifactId=spring-boot\n";
    assert_eq!(purl(&pom_properties(pom).unwrap(), None), "pkg:maven/org.springframework.boot/spring-boot@3.1.5");
    assert_eq!(
        os_release("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n"),
        Some(("debian".into(), "12".into()))
    );
}

#[test]
fn a_go_binary_says_its_modules() {
    // An ELF whose build info sits at offset 32, in Go 1.18's inline form.
    let modinfo =
        "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/gorilla/mux\tv1.8.1\th1:abc=\n";
    let mut bin = b"\x7fELF".to_vec();
    bin.resize(32, 0);
    bin.extend_from_slice(b"\xff Go buildinf:");
    bin.push(8);
    bin.push(2);
    bin.resize(64, 0);
    for s in ["go1.22.1", modinfo] {
        bin.push(u8::try_from(s.len()).unwrap());
        bin.extend_from_slice(s.as_bytes());
    }
    let found = go_modules(&bin);
    assert_eq!(
        found,
        vec![
            pkg(Ecosystem::Golang, "example.com/app", "(devel)"),
            pkg(Ecosystem::Golang, "github.com/gorilla/mux", "v1.8.1")
        ]
    );
    assert!(go_modules(b"#!/bin/sh\necho").is_empty());
}

#[test]
fn layers_merge_as_the_image_filesystem_has_them() {
    let file = |p: &str, n: &str| (p.to_string(), vec![pkg(Ecosystem::Npm, n, "1")]);
    let base = LayerScan {
        files: [
            file("app/node_modules/a/package.json", "a"),
            file("app/node_modules/b/package.json", "b"),
            file("srv/x/package.json", "x"),
        ]
        .into(),
        os: Some(("debian".into(), "12".into())),
        ..LayerScan::default()
    };
    let mut top = LayerScan { files: [file("app/node_modules/c/package.json", "c")].into(), ..LayerScan::default() };
    assert!(top.whiteout("app/node_modules/.wh.a"));
    assert!(top.whiteout("srv/.wh..wh..opq"));
    assert!(!top.whiteout("app/node_modules/c/package.json"));
    let merged = merge([&base, &top]);
    assert_eq!(
        merged.files.keys().collect::<Vec<_>>(),
        ["app/node_modules/b/package.json", "app/node_modules/c/package.json"]
    );
    assert_eq!(merged.os, Some(("debian".into(), "12".into())));
    let doc = document(&merged, "r/app", &crate::digest::Digest::of(b"1"), "2026-01-01T00:00:00Z", "apprunner-build");
    assert_eq!(doc.spdx_version, "SPDX-2.3");
    assert_eq!(doc.packages.len(), 3, "the image and its two packages");
    assert_eq!(doc.packages[1].external_refs[0].reference_locator, "pkg:npm/b@1");
}

/// The statement's bytes, pinned: they are part of the image's index, so of its digest (these
/// are what the document written with `json!` literals gave before it was typed).
#[test]
fn the_sbom_statement_keeps_its_bytes() {
    let base = LayerScan {
        files: [
            (
                "var/lib/dpkg/status".to_string(),
                vec![Package { arch: Some("amd64".into()), ..pkg(Ecosystem::Deb, "libc6", "2.36") }],
            ),
            ("app/node_modules/b/package.json".to_string(), vec![pkg(Ecosystem::Npm, "b", "1")]),
        ]
        .into(),
        os: Some(("debian".into(), "12".into())),
        ..LayerScan::default()
    };
    let merged = merge([&base]);
    let digest = crate::digest::Digest::of(b"image");
    let doc = document(&merged, "127.0.0.1:5000/r/app", &digest, "2026-01-01T00:00:00Z", "apprunner-build-0.1.0");
    let bytes = statement("127.0.0.1:5000/r/app", &digest, &doc);
    let pinned = r#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[{"name":"pkg:docker/127.0.0.1:5000/r/app?platform=linux%2Famd64","digest":{"sha256":"6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"}}],"predicate":{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"127.0.0.1:5000/r/app@sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","documentNamespace":"https://apprunner-build.dev/spdx/127.0.0.1:5000/r/app/sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","creationInfo":{"created":"2026-01-01T00:00:00Z","creators":["Tool: apprunner-build-0.1.0"]},"packages":[{"name":"127.0.0.1:5000/r/app","SPDXID":"SPDXRef-Image","versionInfo":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","downloadLocation":"NOASSERTION","filesAnalyzed":false,"primaryPackagePurpose":"CONTAINER"},{"name":"libc6","SPDXID":"SPDXRef-Package-deb-1","versionInfo":"2.36","downloadLocation":"NOASSERTION","filesAnalyzed":false,"sourceInfo":"found in /var/lib/dpkg/status","externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:deb/debian/libc6@2.36?arch=amd64&distro=debian-12"}]},{"name":"b","SPDXID":"SPDXRef-Package-npm-2","versionInfo":"1","downloadLocation":"NOASSERTION","filesAnalyzed":false,"sourceInfo":"found in /app/node_modules/b/package.json","externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:npm/b@1"}]}],"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-Image"},{"spdxElementId":"SPDXRef-Image","relationshipType":"CONTAINS","relatedSpdxElement":"SPDXRef-Package-deb-1"},{"spdxElementId":"SPDXRef-Image","relationshipType":"CONTAINS","relatedSpdxElement":"SPDXRef-Package-npm-2"}]}}"#;
    assert_eq!(String::from_utf8(bytes).unwrap(), pinned);
}
