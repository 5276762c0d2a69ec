//! The soak's schedule, all from its seed: the deployments (when, which service, followed or
//! not, failing on purpose, batch, cancelled) and the faults (when, which kind, how long).
//! Pure, so a seed replays the same schedule.

use std::time::Duration;

/// `SplitMix64`: a small generator whose whole state is the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// One deployment the soak submits.
#[derive(Debug, Clone)]
pub struct Planned {
    pub n: usize,
    /// When, from the start of the stream.
    pub at: Duration,
    /// Which of the services (several deploy more than once).
    pub service: usize,
    /// Followed by `submit --wait` (else a plain `submit`).
    pub followed: bool,
    /// Its build command exits 1.
    pub fails: bool,
    pub batch: bool,
    /// `cancel` this long after it is submitted.
    pub cancel_after: Option<Duration>,
    /// Seconds its build command sleeps.
    pub sleeps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL of a worker with a build in progress; started again after a moment.
    KillWorker,
    /// A broker node stopped (`rabbitmqctl stop`), started again later.
    StopNode,
    /// A broker node's VM killed with SIGKILL, started again later.
    KillNode,
    /// The registry unreachable (its connections cut, new ones refused) for a while.
    RegistryDown,
    /// BuildKit unreachable (the Docker socket's proxy down) for 20 s.
    BuildkitDown,
    /// A `submit --wait` follower killed; its deployment is read back with `status`.
    KillFollower,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillWorker,
        FaultKind::StopNode,
        FaultKind::KillNode,
        FaultKind::RegistryDown,
        FaultKind::BuildkitDown,
        FaultKind::KillFollower,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "worker-kill",
            FaultKind::StopNode => "node-stop",
            FaultKind::KillNode => "node-kill",
            FaultKind::RegistryDown => "registry-down",
            FaultKind::BuildkitDown => "buildkit-down",
            FaultKind::KillFollower => "follower-kill",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Duration,
    pub kind: FaultKind,
    /// How long it lasts (a node or service away), where that applies.
    pub lasts: Duration,
    /// Which node (0 or 1: the checker's node, the third, is never touched).
    pub node: usize,
}

/// Services the deployments go to.
pub const SERVICES: usize = 8;

/// The schedule of a soak of `minutes`: deployments every 5-11 s over the first two thirds of
/// it, faults spread over the same stretch (every kind once, in a seeded order, then more at
/// random), at least 40 s apart so each is over before the next; the last third drains.
pub fn schedule(seed: u64, minutes: u64) -> (Vec<Planned>, Vec<Fault>) {
    let mut rng = Rng::new(seed);
    let stream = Duration::from_secs(minutes * 60 * 2 / 3);
    let mut deployments = Vec::new();
    let mut at = Duration::from_secs(2);
    while at < stream {
        let n = deployments.len();
        let followed = rng.chance(45);
        let cancel_after = rng.chance(12).then(|| Duration::from_secs(rng.between(1, 12)));
        deployments.push(Planned {
            n,
            at,
            service: usize::try_from(rng.below(SERVICES as u64)).unwrap_or(0),
            followed,
            fails: rng.chance(15),
            batch: rng.chance(15),
            cancel_after,
            sleeps: rng.between(1, 8),
        });
        at += Duration::from_secs(rng.between(5, 11));
    }
    let mut kinds = FaultKind::ALL.to_vec();
    for i in (1..kinds.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        kinds.swap(i, j);
    }
    let gap = 40;
    let slots = (stream.as_secs().saturating_sub(20) / gap).max(1);
    let mut faults = Vec::new();
    for slot in 0..slots {
        let kind = if let Some(kind) = usize::try_from(slot).ok().and_then(|k| kinds.get(k)) {
            *kind
        } else {
            FaultKind::ALL[usize::try_from(rng.below(FaultKind::ALL.len() as u64)).unwrap_or(0)]
        };
        let lasts = Duration::from_secs(match kind {
            FaultKind::RegistryDown => rng.between(20, 40),
            FaultKind::BuildkitDown => 20,
            FaultKind::StopNode | FaultKind::KillNode => rng.between(10, 20),
            FaultKind::KillWorker => 3,
            FaultKind::KillFollower => 0,
        });
        let at = Duration::from_secs(20 + slot * gap + rng.below(10));
        faults.push(Fault { at, kind, lasts, node: usize::try_from(rng.below(2)).unwrap_or(0) });
    }
    (deployments, faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_with_every_kind_of_fault() {
        let (d1, f1) = schedule(7, 8);
        let (d2, f2) = schedule(7, 8);
        assert_eq!(format!("{d1:?}{f1:?}"), format!("{d2:?}{f2:?}"));
        assert!(d1.len() >= 30, "{}", d1.len());
        assert!(FaultKind::ALL.iter().all(|k| f1.iter().any(|f| f.kind == *k)), "{f1:?}");
        assert_ne!(format!("{d1:?}"), format!("{:?}", schedule(8, 8).0));
    }
}
