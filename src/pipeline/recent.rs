//! The images a worker's builds pushed lately, by build key.
//!
//! A fleet often builds one app for many services into one repository (a service per customer,
//! staging beside production): their build keys are the same, and a build of a key this worker
//! has pushed to that repository takes that image under a new index (`image_reuse`) instead of
//! asking `BuildKit` to export and push the same layers again. Only a hint: the image is read
//! back by digest from the target's own repository and reused only when its index carries the
//! same key, so an image deleted since, or a repository another's, is a miss and the build goes
//! on. The CLI's one build per process finds it empty.

use crate::core::image_ref::ImageRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How many keys are kept: a few hundred bytes each; the oldest goes first.
const KEPT: usize = 512;

/// Shared by the builds of one set of settings and of their clones, as `SolveTurns` is.
#[derive(Clone, Default)]
pub struct RecentImages(Arc<Mutex<Recent>>);

#[derive(Default)]
struct Recent {
    next: u64,
    by_key: HashMap<String, (u64, ImageRef)>,
}

impl std::fmt::Debug for RecentImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentImages")
    }
}

impl RecentImages {
    /// The image (`repository@digest`) last pushed with build `key`, if it is still kept.
    pub fn get(&self, key: &str) -> Option<ImageRef> {
        let recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        recent.by_key.get(key).map(|(_, image)| image.clone())
    }

    /// Keeps `image` (which names a digest) as the one of build `key`, dropping the oldest key
    /// when full.
    pub fn remember(&self, key: &str, image: ImageRef) {
        if image.digest.is_none() {
            return;
        }
        let mut recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = recent.next;
        recent.next += 1;
        recent.by_key.insert(key.to_string(), (seq, image));
        if recent.by_key.len() > KEPT {
            // Linear in KEPT, once per build: cheaper than keeping a second order.
            if let Some(oldest) = recent.by_key.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| k.clone()) {
                recent.by_key.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: usize) -> ImageRef {
        ImageRef::parse(&format!("127.0.0.1:5000/app@sha256:{n:064x}")).unwrap()
    }

    #[test]
    fn keeps_the_latest_image_of_a_key_and_forgets_the_oldest_keys() {
        let recent = RecentImages::default();
        assert_eq!(recent.get("k"), None);
        recent.remember("k", image(1));
        recent.remember("k", image(2));
        assert_eq!(recent.get("k"), Some(image(2)), "the latest push of a key");
        // A tag alone says nothing about content: not kept.
        recent.remember("t", ImageRef::parse("127.0.0.1:5000/app:latest").unwrap());
        assert_eq!(recent.get("t"), None);
        for n in 0..KEPT {
            recent.remember(&format!("more-{n}"), image(n));
        }
        assert_eq!(recent.get("k"), None, "the oldest key goes first");
        assert_eq!(recent.get("more-0"), Some(image(0)));
        assert_eq!(recent.get(&format!("more-{}", KEPT - 1)), Some(image(KEPT - 1)));
    }
}
