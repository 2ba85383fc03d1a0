//! A replica's configuration, and the cluster bugs the simulator must catch.

/// Deliberately planted bugs (tests only: the simulator must catch each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterBug {
    /// The leader acknowledges a SET once its own log has it, before a majority does.
    AckBeforeMajority,
    /// Entries are applied when they reach the local log, before they commit.
    ApplyBeforeCommit,
    /// Messages that must wait for the log and hard state (votes among them) go out at once.
    VoteSentBeforePersisted,
    /// A follower answers reads from its own state instead of redirecting to the leader.
    FollowerServesReads,
    /// Committed entries are applied one EXEC each, several in flight: when one fails, the
    /// next one's applied index passes it, and a restart skips it (the bug the cluster
    /// simulator found first, seed 110 with heavy faults).
    ApplyPassesFailedEntry,
    /// The log is truncated right at the lowest `matched` index, with no margin (the swarm's
    /// third find: a leader then needed a snapshot to bring a restarted replica back).
    TruncateWithoutMargin,
}

impl ClusterBug {
    pub const ALL: [ClusterBug; 6] = [
        ClusterBug::AckBeforeMajority,
        ClusterBug::ApplyBeforeCommit,
        ClusterBug::VoteSentBeforePersisted,
        ClusterBug::FollowerServesReads,
        ClusterBug::ApplyPassesFailedEntry,
        ClusterBug::TruncateWithoutMargin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClusterBug::AckBeforeMajority => "ack-before-majority",
            ClusterBug::ApplyBeforeCommit => "apply-before-commit",
            ClusterBug::VoteSentBeforePersisted => "vote-sent-before-persisted",
            ClusterBug::FollowerServesReads => "follower-serves-reads",
            ClusterBug::ApplyPassesFailedEntry => "apply-passes-failed-entry",
            ClusterBug::TruncateWithoutMargin => "truncate-without-margin",
        }
    }

    pub fn from_name(name: &str) -> Option<ClusterBug> {
        ClusterBug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica's id (Raft's node id, never 0).
    pub id: u64,
    /// Every voter's id, this one's included.
    pub voters: Vec<u64>,
    /// Raft ticks without a leader's word before a follower campaigns. raft-rs draws the
    /// timeout from `election_ticks..election_ticks + 1` here: one value, so its `thread_rng`
    /// draw cannot change anything; the driver spreads the replicas by when it ticks them.
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Raft ticks a read may wait for its ReadIndex before it is refused (the leader lost its
    /// quorum or its role).
    pub read_wait_ticks_max: u64,
    /// The largest client request (its arguments' bytes) proposed: an entry must fit a value of
    /// both engines.
    pub request_bytes_max: usize,
    /// Entries the log keeps before the leader proposes to truncate it (TiKV's CompactLog).
    pub truncate_after_entries: u64,
    /// What a MOVED reply names for each replica (`host:port` in a real cluster).
    pub addresses: Vec<(u64, String)>,
    planted_bug: Option<ClusterBug>,
}

impl ReplicaConfig {
    pub fn new(id: u64, voters: Vec<u64>) -> ReplicaConfig {
        assert!(id != 0 && voters.contains(&id), "replica {id} is not among the voters {voters:?}");
        ReplicaConfig {
            id,
            addresses: voters.iter().map(|id| (*id, format!("replica-{id}"))).collect(),
            voters,
            election_ticks: 10,
            heartbeat_ticks: 2,
            read_wait_ticks_max: 40,
            request_bytes_max: 512 * 1024,
            truncate_after_entries: 1024,
            planted_bug: None,
        }
    }

    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<ClusterBug>) {
        self.planted_bug = bug;
    }

    pub fn address_of(&self, id: u64) -> Option<&str> {
        self.addresses.iter().find(|(known, _)| *known == id).map(|(_, address)| address.as_str())
    }

    pub(crate) fn has_bug(&self, bug: ClusterBug) -> bool {
        cfg!(feature = "planted-bugs") && self.planted_bug == Some(bug)
    }
}
