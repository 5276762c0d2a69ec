//! What a watcher does with what it saw of a service: the branch's head, and the service's last
//! deployment on record. App Runner's rule: a commit deploys when it changes something under
//! the source directory (every commit, for the repository root); a service with no deployment
//! gets one for its head, as App Runner deploys a service when it is created. Pure.

use crate::digest::Digest;

/// The trigger of a deployment a watcher starts for a new commit (the deployment log's
/// `Triggering event :`; docs/configuration.md says why this word).
pub const SOURCE_CODE_CHANGE: &str = "SOURCE_CODE_CHANGE";
/// The trigger of a watched service's first deployment: App Runner deploys a service when it
/// is created.
pub const SERVICE_CREATE: &str = "SERVICE_CREATE";

/// The service's last deployment that names a commit, as the broker's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDeployment {
    pub operation_id: String,
    pub commit: String,
}

/// What git says of the last deployed commit and the head, for a source directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// These many paths under the source directory changed (at least one).
    Under(usize),
    /// Nothing under the source directory changed.
    NoneUnder,
    /// The head's history does not hold the last deployed commit (a force push).
    Rewritten,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deploy the head, for `why`.
    Deploy { trigger: &'static str, why: String },
    /// Ask git what changed between the last deployed commit and the head.
    AskGit { from: String },
    /// Nothing, because `why`.
    Nothing { why: String },
}

/// The verdict before git is asked, if it can be given without.
pub fn before_git(last: Option<&LastDeployment>, head: &str, source_dir: &str) -> Verdict {
    let Some(last) = last else {
        return Verdict::Deploy { trigger: SERVICE_CREATE, why: "no deployment on record".into() };
    };
    if last.commit.eq_ignore_ascii_case(head) {
        return Verdict::Nothing { why: format!("the head is the last deployed commit ({})", short(head)) };
    }
    if source_dir == "/" {
        return Verdict::Deploy {
            trigger: SOURCE_CODE_CHANGE,
            why: format!("new commit {} after {} (the source directory is the root)", short(head), short(&last.commit)),
        };
    }
    Verdict::AskGit { from: last.commit.clone() }
}

/// The verdict once git has said what changed from `from` to `head` under `source_dir`.
pub fn after_git(changes: &Changes, from: &str, head: &str, source_dir: &str) -> Verdict {
    match changes {
        Changes::Under(n) => Verdict::Deploy {
            trigger: SOURCE_CODE_CHANGE,
            why: format!("{n} paths under {source_dir} changed from {} to {}", short(from), short(head)),
        },
        Changes::Rewritten => Verdict::Deploy {
            trigger: SOURCE_CODE_CHANGE,
            why: format!("the branch was rewritten: {} is not in the history of {}", short(from), short(head)),
        },
        Changes::NoneUnder => Verdict::Nothing {
            why: format!("nothing under {source_dir} changed from {} to {}", short(from), short(head)),
        },
    }
}

/// The operation id of the deployment of `service` at `commit`: the same for every watcher and
/// after any restart, so a second submission of it is the same deployment, recognised as one.
pub fn operation_id(service: &str, commit: &str) -> String {
    let d = Digest::of(format!("apprunner-build watch\0{service}\0{}", commit.to_ascii_lowercase()).as_bytes());
    d.hex()[..32].to_string()
}

/// A commit as people read it: its first 12 hex digits.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn a_new_service_deploys_its_head_and_a_head_already_deployed_nothing() {
        assert!(matches!(before_git(None, A, "/app"), Verdict::Deploy { trigger: SERVICE_CREATE, .. }));
        let last = LastDeployment { operation_id: "op".into(), commit: A.into() };
        assert!(matches!(before_git(Some(&last), A, "/app"), Verdict::Nothing { .. }));
        assert!(matches!(before_git(Some(&last), &A.to_uppercase(), "/"), Verdict::Nothing { .. }));
    }

    #[test]
    fn the_root_deploys_every_commit_and_a_folder_asks_git() {
        let last = LastDeployment { operation_id: "op".into(), commit: A.into() };
        assert!(matches!(before_git(Some(&last), B, "/"), Verdict::Deploy { trigger: SOURCE_CODE_CHANGE, .. }));
        assert_eq!(before_git(Some(&last), B, "/app"), Verdict::AskGit { from: A.into() });
        assert!(matches!(after_git(&Changes::Under(2), A, B, "/app"), Verdict::Deploy { .. }));
        assert!(matches!(after_git(&Changes::Rewritten, A, B, "/app"), Verdict::Deploy { .. }));
        let Verdict::Nothing { why } = after_git(&Changes::NoneUnder, A, B, "/app") else { panic!() };
        assert_eq!(why, "nothing under /app changed from 111111111111 to 222222222222");
    }

    #[test]
    fn one_service_and_commit_give_one_operation_id() {
        let id = operation_id("web", A);
        assert_eq!(id.len(), 32);
        assert_eq!(id, operation_id("web", &A.to_uppercase()));
        assert_ne!(id, operation_id("web", B));
        assert_ne!(id, operation_id("api", A));
    }
}
