//! The engine against the shared scheduler behaviour suite: one origin
//! seeds what the suite publishes, one agent is the scheduler under test.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::{Peer, Swarm, fast_config};
use kraken_core::testkit::{SchedulerHarness, scheduler_suite};
use kraken_core::{BlobStore, Digest, Namespace, Scheduler};

struct Harness {
    swarm: Swarm,
    origin: Peer,
    agent: Peer,
}

#[async_trait]
impl SchedulerHarness for Harness {
    fn scheduler(&self) -> Arc<dyn Scheduler> {
        Arc::new(self.agent.engine.clone())
    }

    fn store(&self) -> Arc<dyn BlobStore> {
        self.agent.store.clone()
    }

    async fn publish(&self, _: &Namespace, data: Bytes) -> Digest {
        *self
            .swarm
            .publish(&self.origin, &data, 16 * 1024)
            .await
            .digest()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_passes_the_scheduler_suite() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let agent = swarm.peer(fast_config(), false).await;
    scheduler_suite(&Harness {
        swarm,
        origin,
        agent,
    })
    .await;
}
