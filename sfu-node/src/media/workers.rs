//! The threads that drive a room's peers when it has more than one (`--threads`).
//!
//! Everything the room decides stays on its own thread: the rules, which track feeds which
//! slot, each packet's rewrite. What costs the most per packet is per peer and touches nothing
//! else: doing a viewer's RTP writes, encrypting them (SRTP), and polling its str0m state
//! until it waits. A wake-up's peers to drive are split into contiguous shards, one per
//! thread, each shard borrowed by its thread alone; the room's thread drives the first shard
//! itself and waits for the others (see `drive::Media::drive_many`). Publishers' payloads
//! are shared between viewers (`Arc<[u8]>`), never copied.

use rayon::{ThreadPool, ThreadPoolBuilder};

use super::Peer;

/// Fewest peers worth handing to a thread of their own: below this, the hand-off costs more
/// than the work it spreads.
const MIN_PEERS_PER_THREAD: usize = 4;

#[derive(Debug)]
pub(super) struct Workers {
    /// `threads - 1` helpers; `None` with one thread.
    pool: Option<ThreadPool>,
    threads: usize,
}

impl Workers {
    pub(super) fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let pool = (threads > 1)
            .then(|| {
                ThreadPoolBuilder::new()
                    .num_threads(threads - 1)
                    .thread_name(|i| format!("room-worker-{}", i + 1))
                    .build()
                    .map_err(|e| tracing::warn!("room worker threads: {e}; driving on one"))
                    .ok()
            })
            .flatten();
        Workers { pool, threads }
    }

    /// Whether peers may be driven on other threads than the room's.
    pub(super) fn spreads(&self) -> bool {
        self.pool.is_some()
    }

    pub(super) fn threads(&self) -> usize {
        if self.pool.is_some() { self.threads } else { 1 }
    }

    /// The threads to spread `peers` peers over, or `None` when they are driven on the room's
    /// thread alone.
    pub(super) fn pool(&self, peers: usize) -> Option<Spread<'_>> {
        let pool = self.pool.as_ref()?;
        let shards = self.threads.min(peers / MIN_PEERS_PER_THREAD);
        (shards > 1).then_some(Spread { pool, shards })
    }
}

/// One wake-up's spreading of peers over threads.
#[derive(Debug)]
pub(super) struct Spread<'a> {
    pool: &'a ThreadPool,
    shards: usize,
}

impl Spread<'_> {
    /// Call `f` on every peer of `peers`, then `g` on the shard, each shard on one thread;
    /// returns what `g` returned for each shard, in order, once all are done.
    pub(super) fn drive<R: Send>(
        &self,
        peers: &mut [&mut Peer],
        f: impl Fn(&mut Peer) + Sync,
        g: impl Fn(&mut [&mut Peer]) -> R + Sync,
    ) -> Vec<R> {
        let size = peers.len().div_ceil(self.shards).max(1);
        let mut results: Vec<Option<R>> = Vec::new();
        results.resize_with(peers.len().div_ceil(size), || None);
        let (f, g) = (&f, &g);
        let shard = move |shard: &mut [&mut Peer], result: &mut Option<R>| {
            shard.iter_mut().for_each(|p| f(p));
            *result = Some(g(shard));
        };
        let shard = &shard;
        self.pool.in_place_scope(|scope| {
            let mut shards = peers.chunks_mut(size).zip(results.iter_mut());
            let first = shards.next();
            for (peers, result) in shards {
                scope.spawn(move |_| shard(peers, result));
            }
            if let Some((peers, result)) = first {
                shard(peers, result);
            }
        });
        results.into_iter().flatten().collect()
    }
}
