//! The in-memory peer store against the shared peer store suite.

use std::sync::Arc;

use kraken_core::PeerStore;
use kraken_p2p::tracker::MemoryPeerStore;

#[tokio::test]
async fn passes_the_peer_store_suite() {
    kraken_core::testkit::peer_store_suite(|ttl| async move {
        Arc::new(MemoryPeerStore::new(ttl)) as Arc<dyn PeerStore>
    })
    .await;
}
