//! Weighted rendezvous (highest random weight) hashing: which nodes own a
//! digest.
//!
//! Every node scores every digest with a hash of the pair; the highest
//! scores own it. Any party holding the same member list computes the same
//! owners with no state to share, and when a node joins or leaves only the
//! digests whose top scores involve that node move. Weights scale a node's
//! share: a node of weight 200 owns about twice what a node of weight 100
//! does.

use sha2::Digest as _;

use crate::Digest;

/// One member of a rendezvous set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// A stable label, usually the member's address; scores derive from it.
    pub label: String,
    /// The node's relative share; zero means it owns nothing.
    pub weight: u32,
}

impl Node {
    /// Creates a node with the default weight of 100.
    pub fn new(label: impl Into<String>) -> Self {
        Node {
            label: label.into(),
            weight: 100,
        }
    }
}

/// A set of nodes that answers who owns a digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendezvous {
    nodes: Vec<Node>,
}

impl Rendezvous {
    /// Creates the set; duplicate labels keep their first entry.
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Self {
        let mut unique: Vec<Node> = Vec::new();
        for node in nodes {
            if !unique.iter().any(|n| n.label == node.label) {
                unique.push(node);
            }
        }
        Rendezvous { nodes: unique }
    }

    /// Returns the members in the order given.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Returns every node of non-zero weight, best owner first.
    pub fn ranked(&self, key: &Digest) -> Vec<&Node> {
        let mut scored: Vec<(f64, &Node)> = self
            .nodes
            .iter()
            .filter(|n| n.weight > 0)
            .map(|n| (score(key, n), n))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.label.cmp(&b.1.label)));
        scored.into_iter().map(|(_, n)| n).collect()
    }

    /// Returns the `replicas` owners of `key`, best first.
    pub fn owners(&self, key: &Digest, replicas: usize) -> Vec<&Node> {
        let mut ranked = self.ranked(key);
        ranked.truncate(replicas);
        ranked
    }
}

/// Scores a node for a key: `-weight / ln(h)` with `h` uniform in (0, 1), the
/// standard weighted form, which keeps each node's share proportional to
/// its weight.
fn score(key: &Digest, node: &Node) -> f64 {
    let mut hasher = sha2::Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(node.label.as_bytes());
    let hash = hasher.finalize();
    let top = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) >> 11;
    // (top + 1) / 2^53 lies in (0, 1]; nudge 1 down so ln stays negative.
    let h = ((top + 1) as f64 / (1u64 << 53) as f64).min(1.0 - f64::EPSILON);
    -f64::from(node.weight) / h.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(n: u32) -> Vec<Digest> {
        (0..n)
            .map(|i| Digest::sha256_of(&i.to_be_bytes()))
            .collect()
    }

    fn set(labels: &[&str]) -> Rendezvous {
        Rendezvous::new(labels.iter().map(|l| Node::new(*l)))
    }

    #[test]
    fn owners_are_distinct_ordered_and_deterministic() {
        let r = set(&["a:1", "b:1", "c:1", "d:1"]);
        for d in digests(100) {
            let owners = r.owners(&d, 3);
            assert_eq!(owners.len(), 3);
            assert_eq!(owners, set(&["d:1", "c:1", "b:1", "a:1"]).owners(&d, 3));
            let mut labels: Vec<_> = owners.iter().map(|n| &n.label).collect();
            labels.dedup();
            assert_eq!(labels.len(), 3);
        }
        assert_eq!(r.owners(&digests(1)[0], 10).len(), 4);
    }

    #[test]
    fn removing_a_node_moves_only_its_share() {
        let before = set(&["a", "b", "c", "d", "e"]);
        let after = set(&["a", "b", "c", "e"]);
        for d in digests(2000) {
            let old: Vec<_> = before
                .ranked(&d)
                .into_iter()
                .filter(|n| n.label != "d")
                .collect();
            assert_eq!(
                old,
                after.ranked(&d),
                "order among survivors must not change"
            );
        }
    }

    #[test]
    fn weights_shape_shares() {
        let r = Rendezvous::new([
            Node {
                label: "heavy".into(),
                weight: 300,
            },
            Node::new("light"),
            Node {
                label: "off".into(),
                weight: 0,
            },
        ]);
        let keys = digests(4000);
        let heavy = keys
            .iter()
            .filter(|d| r.owners(d, 1)[0].label == "heavy")
            .count();
        // Expect 3/4 of 4000 = 3000; allow for sampling noise.
        assert!((2800..3200).contains(&heavy), "heavy owned {heavy}");
        assert!(keys.iter().all(|d| r.ranked(d).len() == 2));
    }

    #[test]
    fn shares_are_even_with_equal_weights() {
        let r = set(&["o1", "o2", "o3"]);
        let mut counts = [0usize; 3];
        for d in digests(3000) {
            let first = &r.owners(&d, 1)[0].label;
            counts[first[1..].parse::<usize>().unwrap() - 1] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }
}
