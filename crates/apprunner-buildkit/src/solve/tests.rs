use super::*;

#[test]
fn a_lost_connection_is_told_from_buildkit_saying_no() {
    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
    let mut from_transport = tonic::Status::unknown("transport error");
    from_transport.set_source(std::sync::Arc::new(cut));
    assert!(lost_connection(&from_transport));
    assert!(lost_connection(&tonic::Status::unavailable("connection refused")));
    assert!(!lost_connection(&tonic::Status::unknown("failed to solve: invalid reference format")));
    assert!(!lost_connection(&tonic::Status::invalid_argument("bad definition")));
}

#[test]
fn exit_codes_come_out_of_executor_errors() {
    assert_eq!(exit_code("executor failed running [/bin/sh -c exit 3]: exit code: 3"), Some(3));
    assert_eq!(exit_code("process \"/bin/sh -c false\" did not complete successfully: exit code: 1: more"), Some(1));
    assert_eq!(exit_code("no code here"), None);
}

#[test]
fn chunks_become_lines_per_stream() {
    let mut s = LineSplitter::default();
    assert_eq!(s.push("v", 1, b"a\nb"), vec![(1, "a".to_string())]);
    assert_eq!(s.push("v", 2, b"err\n"), vec![(2, "err".to_string())]);
    assert_eq!(s.push("v", 1, b"c\nd"), vec![(1, "bc".to_string())]);
    assert_eq!(s.flush("v"), vec![(1, "d".to_string())]);
    assert_eq!(s.push("v", 1, b"10%\r50%\r100%\n"), vec![(1, "100%".to_string())]);
}

/// A step whose container the runtime could not start (it said so in the step's output,
/// seen under load) failed on the machine, not on the user's command: tried again.
#[test]
fn a_step_whose_container_never_started_is_tried_again() {
    let step = VertexInfo { stage: "build".into(), step: Some(0), steps: 1, name: "[build] pip install".into() };
    let vertices = BTreeMap::from([("sha256:v".to_string(), step)]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let told: Arc<Mutex<Told>> = Arc::default();
    let mut reader = StatusReader::new(vertices, tx, told.clone());
    let stamp = Some(prost_types::Timestamp::default());
    let failed = Vertex {
        digest: "sha256:v".into(),
        name: "pip install".into(),
        started: stamp,
        completed: stamp,
        error: "process \"/bin/sh -c pip install\" did not complete successfully: exit code: 1".into(),
        ..Vertex::default()
    };
    let said = "runc run failed: unable to start container process: waiting for init preliminary setup: read init-p: connection reset by peer\n";
    // The failure and the runtime's line in one update: the line is read after the vertex.
    let log = crate::control::VertexLog { vertex: "sha256:v".into(), stream: 2, msg: said.as_bytes().to_vec() };
    reader.read(StatusResponse { vertexes: vec![failed], logs: vec![log] });
    reader.finish();
    let status =
        tonic::Status::unknown("process \"/bin/sh -c pip install\" did not complete successfully: exit code: 1");
    let failure = failure(&status, &told.lock().unwrap());
    assert!(matches!(failure, SolveFailure::NotStarted { .. }), "{failure:?}");
    assert_eq!(apprunner_core::error::Classified::class(&failure), apprunner_core::error::ErrorClass::Transient);
    assert!(failure.to_string().contains("could not start its container"), "{failure}");
    let mut lines = 0;
    while let Ok(event) = rx.try_recv() {
        lines += usize::from(matches!(event, SolveEvent::Line { .. }));
    }
    assert_eq!(lines, 1, "the runtime's line is still in the log");
    // A command of the user's that exits 1 stays the user's.
    told.lock().unwrap().not_started.clear();
    assert!(matches!(failure_of(&status, &told), SolveFailure::Step { exit_code: Some(1), .. }));
}

fn failure_of(status: &tonic::Status, told: &Arc<Mutex<Told>>) -> SolveFailure {
    failure(status, &told.lock().unwrap())
}
