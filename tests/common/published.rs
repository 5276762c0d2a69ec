//! The lines a deployment's builds published, from the messages a raw listener of `<p>.logs`
//! heard: a message's id is its build's and its place in that build (`<build>.<n>`), and a
//! message published again (its confirm lost) comes twice under one id. Self-contained, so
//! `examples/chaos` includes it too.

/// One list of lines per build that published any, each in its build's order, every message
/// taken once. Builds of one operation (a redelivery's beside its first builder's) interleave on
/// the wire by whichever connection the broker heard first, so order is only a build's own.
pub fn by_build(messages: &[(String, Vec<String>)]) -> Vec<Vec<String>> {
    // Each build's messages: (its place in the build, its lines).
    type Messages = Vec<(u64, Vec<String>)>;
    let mut taken = std::collections::HashSet::new();
    let mut builds: Vec<(&str, Messages)> = Vec::new();
    for (id, lines) in messages {
        if !taken.insert(id.as_str()) {
            continue;
        }
        let (build, n) = id.rsplit_once('.').unwrap_or((id.as_str(), "0"));
        let entry = (n.parse().unwrap_or(0), lines.clone());
        match builds.iter_mut().find(|(b, _)| *b == build) {
            Some((_, all)) => all.push(entry),
            None => builds.push((build, vec![entry])),
        }
    }
    builds
        .into_iter()
        .map(|(_, mut m)| {
            m.sort_by_key(|(n, _)| *n);
            m.into_iter().flat_map(|(_, l)| l).collect()
        })
        .collect()
}

/// Whether `printed` (a follower's output) holds every line of every build, each build's in
/// its order; the first line missing if not.
pub fn printed_all(builds: &[Vec<String>], printed: &str) -> Result<(), String> {
    let lines: Vec<&str> = printed.lines().collect();
    for build in builds {
        let mut at = 0;
        for line in build {
            match lines[at..].iter().position(|l| l == line) {
                Some(k) => at += k + 1,
                None => return Err(line.clone()),
            }
        }
    }
    Ok(())
}
