//! Builds of the same content take turns on `BuildKit`.
//!
//! Two exports of identical content at once wait on each other inside the daemon: both write
//! the same image config into containerd's content store under one ingest ref, and the loser
//! backs off at random, at times for seconds (measured with eight concurrent builds of one app:
//! each export 0.1-0.2 s one at a time, 0.6-0.9 s two at a time, 0.6 s or 8.8 s eight at a time,
//! the machine idle meanwhile; docs/performance.md). So the builds of one process whose image
//! definitions are the same but for whose package caches they mount (two services of one app)
//! run their solves one after another; the second then finds the blobs written (and, of the
//! same service, every step cached). Builds of other content never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

/// The turns of the builds of one set of settings (and of their clones: a worker's builds).
#[derive(Clone, Default)]
pub struct SolveTurns(Arc<Mutex<HashMap<String, Weak<TurnLock<()>>>>>);

impl std::fmt::Debug for SolveTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SolveTurns")
    }
}

/// A build's turn on `BuildKit`: the next build of the same content waits until it is dropped.
pub struct Turn {
    _held: OwnedMutexGuard<()>,
    /// Whether another build of the content held the turn first (and may have pushed its image).
    pub waited: bool,
}

impl SolveTurns {
    /// Waits until no other build of `content` (`Prepared::content_key`) holds a turn;
    /// calls `waiting` first if one does.
    pub async fn take(&self, content: &str, waiting: impl FnOnce()) -> Turn {
        let lock = {
            let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Only the contents of builds running now are kept: the map is as small as they are few.
            all.retain(|_, held| held.strong_count() > 0);
            if let Some(lock) = all.get(content).and_then(Weak::upgrade) {
                lock
            } else {
                let lock = Arc::new(TurnLock::new(()));
                all.insert(content.to_string(), Arc::downgrade(&lock));
                lock
            }
        };
        if let Ok(held) = lock.clone().try_lock_owned() {
            return Turn { _held: held, waited: false };
        }
        waiting();
        Turn { _held: lock.lock_owned().await, waited: true }
    }

    /// How many contents have builds holding or awaiting a turn.
    #[cfg(test)]
    fn contents(&self) -> usize {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, held| held.strong_count() > 0);
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_same_content_waits_and_other_content_does_not() {
        let turns = SolveTurns::default();
        let first = turns.take("a", || panic!("nothing held it")).await;
        // Other content: at once.
        let other = tokio::time::timeout(Duration::from_secs(1), turns.take("b", || panic!("b waited"))).await;
        assert!(other.is_ok(), "a build of other content waited");
        // The same content: only once the first is done.
        let shared = turns.clone();
        let second = tokio::spawn(async move {
            let told = std::sync::atomic::AtomicBool::new(false);
            let turn = shared.take("a", || told.store(true, std::sync::atomic::Ordering::Relaxed)).await;
            (turn, told.into_inner())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a build of the same content did not wait");
        drop(first);
        let (second, told) =
            tokio::time::timeout(Duration::from_secs(1), second).await.expect("it got its turn").unwrap();
        assert!(told, "the waiting build was not told it waits");
        assert!(second.waited && !other.as_ref().unwrap().waited, "a turn says whether it was waited for");
        drop((second, other));
        assert_eq!(turns.contents(), 0, "nothing is kept once the builds are done");
    }
}
