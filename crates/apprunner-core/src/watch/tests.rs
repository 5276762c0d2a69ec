use super::*;
use crate::catalog::RuntimeCatalog;
use crate::request::ConfigInput;

fn read(text: &str) -> Result<Vec<WatchedService>, ServicesErrors> {
    read_services(text, "services.yaml", RuntimeCatalog::builtin())
}

#[test]
fn a_service_takes_defaults_for_what_it_leaves_out() {
    let services = read(
        "services:\n  - name: web-app\n    repository: https://git.example.com/team/web.git\n    image: 127.0.0.1:5000/apps/web\n  - name: api_1\n    repository: file:///srv/git/mono\n    branch: release/2026\n    source-directory: services/api/\n    image: 127.0.0.1:5000/apps/api:live\n    auto-deploy: false\n    configuration:\n      Runtime: PYTHON_3\n      BuildCommand: pip install -r requirements.txt\n      StartCommand: python app.py\n      Port: 8080\n",
    )
    .unwrap();
    assert_eq!(services.len(), 2);
    let (web, api) = (&services[0], &services[1]);
    assert_eq!((web.branch.as_deref(), web.source_dir.as_str(), web.auto_deploy), (None, "/", true));
    assert_eq!(web.configuration, ConfigInput::Repository);
    assert_eq!(web.image.to_string(), "127.0.0.1:5000/apps/web");
    assert_eq!(
        (api.branch.as_deref(), api.source_dir.as_str(), api.auto_deploy),
        (Some("release/2026"), "/services/api", false)
    );
    let ConfigInput::Api(values) = &api.configuration else { panic!("{:?}", api.configuration) };
    assert_eq!(values["Port"], "8080", "API values are strings, as App Runner's API takes them");
}

#[test]
fn every_problem_of_the_file_is_one_line_with_its_place() {
    let text = "services:\n  - name: ab\n    repository: https://user:token@git.example.com/x.git\n    image: 127.0.0.1:5000/apps/x@sha256:0000000000000000000000000000000000000000000000000000000000000000\n  - name: good-one\n    repository: git@github.com:x/y\n    branch: bad..name\n    source-directory: ../up\n    image: nope\n    colour: blue\n    auto-deploy: maybe\n    configuration:\n      Runtime: COBOL\n  - name: good-one\n    repository: https://git.example.com/y.git\n    image: 127.0.0.1:5000/apps/y\n  - name: good-one\n    repository: https://git.example.com/z.git\n    image: 127.0.0.1:5000/apps/z\n  - just text\n";
    let problems = read(text).unwrap_err().0;
    let expected = [
        "services.yaml:2:11: services[0].name: `ab` is not a service name",
        "services.yaml:3:17: services[0].repository: the URL holds credentials; give them in the git-credentials file",
        "services.yaml:4:12: services[0].image: `127.0.0.1:5000/apps/x@sha256:",
        "services.yaml:10:5: services[1]: unknown key `colour`; the keys are name, repository, branch",
        "services.yaml:6:17: services[1].repository: `git@github.com:x/y` is not a repository URL; give https://HOST/PATH or file:///PATH",
        "services.yaml:7:13: services[1].branch: `bad..name` is not a branch name git takes",
        "services.yaml:8:23: services[1].source-directory: `../up` leaves the repository",
        "services.yaml:9:12: services[1].image: `nope` is not an image reference",
        "services.yaml:13:7: services[1].configuration: Runtime: ",
        "services.yaml:11:18: services[1].auto-deploy: `maybe` is not true or false",
        "services.yaml:17:5: services[3]: service `good-one` is declared twice (first at line 14)",
        "services.yaml:20:5: services[4] is a scalar; give a mapping of name, repository",
    ];
    for want in expected {
        assert!(problems.iter().any(|p| p.starts_with(want)), "no line starts {want:?}:\n{}", problems.join("\n"));
    }
    assert_eq!(problems.len(), expected.len(), "{}", problems.join("\n"));
    assert!(!problems.join("\n").contains("token"), "no credential in any line");
}

#[test]
fn a_file_that_is_not_a_list_of_services_says_what_would_be() {
    assert_eq!(
        read("").unwrap_err().0,
        ["services.yaml:1:1: the file is empty; give `services:` and a list of services under it"]
    );
    assert!(read("services: 3\n").unwrap_err().0[0].contains("`services` is a scalar; give a list"));
    assert!(read("service:\n  - name: x\n").unwrap_err().0[0].contains("unknown key `service`"));
    assert!(read("services: [\n").unwrap_err().0[0].starts_with("services.yaml:"));
    let many = format!("services:\n{}", "  - {}\n".repeat(150));
    let problems = read(&many).unwrap_err().0;
    assert_eq!(problems.len(), 101, "100 problems, then how many more");
    assert!(problems[100].contains("… and 350 more problems"), "{}", problems[100]);
}
