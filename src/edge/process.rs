//! Child processes that must not outlive the build that started them.

/// Kills a process group when dropped, unless it has been let go (`.0 = None`): a build dropped
/// at its time limit ends its child's own children (git's helpers, a recipe's docker builds) too.
pub(crate) struct ProcessGroup(pub(crate) Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pgid = self.0.and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw);
        if let Some(pgid) = pgid {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}
